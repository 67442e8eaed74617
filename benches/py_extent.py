"""The notebook path, as a user runs it: import floodsql, one call, the
array in hand. Prints the flooded pixel count (checked by benches/python.sh).

usage: py_extent.py API_URL BBOX START END
"""
import sys
from datetime import datetime

import floodsql

api, bbox, start, end = sys.argv[1:5]
extent = floodsql.max_flood_extent(
    stac_url=api,
    bbox=tuple(float(v) for v in bbox.split(",")),
    datetime=(datetime.fromisoformat(start), datetime.fromisoformat(end)),
    progress=False,
)
print(int(extent.sum()), extent.nbytes)
