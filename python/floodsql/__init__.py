"""floodsql in Python: SQL over flood data, the library the ``floodsql`` CLI
uses, one import away.

The tutorial's whole job (search, load, reduce) in one call::

    import floodsql
    extent = floodsql.max_flood_extent(
        stac_url="https://stac.eodc.eu/api/v1",
        bbox=(67.398376, 26.197341, 69.027100, 27.591066),
        datetime=(datetime(2022, 9, 1), datetime(2022, 10, 1)),
    )
    extent.plot()

``extent`` is an ``xarray.DataArray`` (uint8, dims ``y, x``) equal to what
the tutorial's odc-stac + xarray cells compute, with the items' CRS and
transform attached as odc-geo and rioxarray read them (``extent.odc.geobox``,
``extent.rio.crs``).

SQL, as in datafusion-python and DuckDB::

    con = floodsql.connect()                      # or connect("df://host:50050")
    r = con.sql("SELECT ... FROM flood_chunks(${source}, ...)", params={...})
    r.to_arrow_table(); r.to_pandas(); r.to_xarray()
    r.write(tif="x.tif", parquet="x.parquet", png="x.png")
    pyarrow.table(r)  # the Arrow PyCapsule stream protocol

A query runs with the GIL released; Ctrl-C (KeyboardInterrupt) cancels it
(on a cluster, its job on the scheduler) and leaves no output file.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys

from . import _floodsql
from ._errors import (
    DataError,
    Error,
    InternalError,
    InvalidInputError,
    RefusedError,
    TimeoutError,
    raising as _raising,
)

__all__ = [
    "connect",
    "Connection",
    "Result",
    "max_flood_extent",
    "raster",
    "daily_series",
    "zonal_stats",
    "stac_items",
    "Error",
    "InvalidInputError",
    "DataError",
    "RefusedError",
    "TimeoutError",
    "InternalError",
]

__version__ = _floodsql.version()

_DEFAULT_CHUNK, _DEFAULT_COLLECTION = _floodsql.defaults()
_SQL = dict(_floodsql.shipped_sql())
# how long a wait slice lasts: a KeyboardInterrupt is seen within it
_SLICE = 0.1


# ---------------------------------------------------------------- arguments


def _bbox_text(bbox) -> str:
    if isinstance(bbox, str):
        return bbox
    if hasattr(bbox, "bounds") and not isinstance(bbox, (list, tuple)):
        bbox = bbox.bounds  # a shapely geometry, as the tutorial's aoi
    try:
        vals = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise InvalidInputError(f"bbox: expected minx,miny,maxx,maxy (4 numbers), got {bbox!r}") from None
    if len(vals) != 4:
        raise InvalidInputError(f"bbox: expected 4 numbers (minx, miny, maxx, maxy), got {len(vals)}")
    return ",".join(repr(v) for v in vals)


def _time_text(t) -> str:
    if t is None:
        return ".."
    if isinstance(t, str):
        return t
    if isinstance(t, _dt.datetime):
        # naive datetimes are UTC, as pystac-client reads them
        if t.tzinfo is None:
            return t.isoformat() + "Z"
        return t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(t, _dt.date):
        return t.isoformat()
    raise InvalidInputError(f"datetime: expected a string, a datetime or a date, got {t!r}")


def _datetime_text(datetime) -> str | None:
    """A STAC datetime interval from what pystac-client accepts: a string
    ("2022-09", "2022-09-01/2022-10-01"), a datetime/date, or a
    (start, end) pair (None: open)."""
    if datetime is None:
        return None
    if isinstance(datetime, (list, tuple)):
        if len(datetime) != 2:
            raise InvalidInputError(f"datetime: a (start, end) pair, got {len(datetime)} values")
        return f"{_time_text(datetime[0])}/{_time_text(datetime[1])}"
    return _time_text(datetime)


def _scan_params(stac_url, bbox, datetime, collection, asset, chunk):
    if not isinstance(stac_url, (str, os.PathLike)):
        raise InvalidInputError(f"stac_url: expected a URL or a path, got {stac_url!r}")
    return {
        "source": os.fspath(stac_url),
        "collection": collection,
        "bbox": _bbox_text(bbox),
        "datetime": _datetime_text(datetime),
        "asset": asset if isinstance(asset, str) else ",".join(asset),
        "chunk": int(chunk) if chunk is not None else _DEFAULT_CHUNK,
    }


# ---------------------------------------------------------------- waiting


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Bar:
    """tqdm progress for a job (tqdm.auto: a widget in Jupyter), when asked
    for or when interactive and tqdm is installed; silent otherwise."""

    def __init__(self, progress, desc):
        self.bar = None
        if progress is None:
            progress = _interactive()
        if not progress:
            return
        try:
            if "ipykernel" in sys.modules:
                import ipywidgets  # noqa: F401  (tqdm's Jupyter widget needs it)
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
        except ImportError:
            try:
                from tqdm import tqdm
            except ImportError:
                return
        # rows: (time slice, chunk) rows scanned locally; tasks on a cluster
        self.bar = tqdm(desc=desc, unit="row", leave=False)

    def update(self, job):
        if self.bar is None:
            return
        items, done, total = job.progress()
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.set_postfix_str(f"{items} items", refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _wait(job, progress=None, desc="floodsql"):
    """The job's result: waits in short slices with the GIL released; a
    KeyboardInterrupt cancels the query (and its cluster job) before it
    propagates."""
    bar = _Bar(progress, desc)
    try:
        while not job.wait(_SLICE):
            bar.update(job)
    except BaseException:
        job.cancel()
        raise
    finally:
        bar.close()
    with _raising:
        return job.result()


# ---------------------------------------------------------------- results


def _to_dataarray(r: dict, name: str | None = None):
    """A raster result as an xarray.DataArray on its grid, in odc-geo's
    conventions (as odc-stac builds them): pixel-centre ``y``/``x``
    coordinates (``latitude``/``longitude`` for a geographic CRS) and a
    ``spatial_ref`` coordinate rioxarray and odc-geo read the CRS from."""
    import numpy as np
    import xarray as xr
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    h, w = r["height"], r["width"]
    # a view of the Rust allocation (no copy); writable
    data = np.frombuffer(r["pixels"], dtype=np.dtype(r["dtype"])).reshape(h, w)
    if data.dtype.byteorder == "<" and sys.byteorder == "little":
        data = data.view(data.dtype.newbyteorder("="))
    g = r["geotransform"]
    gbox = GeoBox((h, w), Affine(g[1], g[2], g[0], g[4], g[5], g[3]), r["crs"])
    attrs = {}
    if r["nodata"] is not None:
        attrs["nodata"] = r["nodata"]
    return xr.DataArray(
        data,
        coords=xr_coords(gbox, crs_coord_name="spatial_ref"),
        dims=gbox.dimensions,
        name=name,
        attrs=attrs,
    )


class Result:
    """A query, not yet run: each method runs it (a result streams once per
    call). ``repr`` shows the SQL."""

    def __init__(self, con: "Connection", sql: str, progress=None):
        self._con = con
        self.sql = sql
        self._progress = progress

    def __repr__(self):
        return f"<floodsql.Result {self.sql.strip()[:200]!r}>"

    # Arrow
    def __arrow_c_stream__(self, requested_schema=None):
        """The Arrow PyCapsule stream protocol: pyarrow (``pa.table(r)``),
        polars (``pl.DataFrame(r)``) and DuckDB read the result through it
        batch by batch, without copies."""
        stream = _wait(self._con._inner.start_stream(self.sql), self._progress, "plan")
        return stream.__arrow_c_stream__(requested_schema)

    def to_arrow_reader(self):
        """A pyarrow.RecordBatchReader over the result (streams)."""
        import pyarrow as pa

        return pa.RecordBatchReader.from_stream(self)

    def to_arrow_table(self):
        """The result as a pyarrow.Table (collected with the query
        cancellable until the last batch)."""
        import pyarrow as pa

        stream = _wait(self._con._inner.start_collect(self.sql), self._progress, "query")
        return pa.RecordBatchReader.from_stream(stream).read_all()

    def to_pandas(self):
        """The result as a pandas DataFrame."""
        return self.to_arrow_table().to_pandas()

    # rasters
    def to_xarray(self, name: str | None = None):
        """The result rasterised onto its flood_chunks scan's grid, as an
        xarray.DataArray: the pixels the CLI's GeoTIFF of this query holds
        (nodata in ``attrs["nodata"]`` when the aggregate declares one)."""
        r = _wait(self._con._inner.start_array(self.sql), self._progress, "query")
        return _to_dataarray(r, name)

    def write(self, tif=None, parquet=None, png=None, title: str | None = None) -> dict:
        """Writes the result as the CLI does, all or nothing (a GeoTIFF COG, the
        chunk table as Parquet, a PNG quicklook, and the lineage STAC item
        beside the first): the run's summary as a dict."""
        f = lambda p: None if p is None else os.fspath(p)  # noqa: E731
        with _raising:
            job = self._con._inner.start_write(self.sql, f(tif), f(parquet), f(png), title)
        return _wait(job, self._progress, "query")

    def plan(self) -> list[dict]:
        """Searches and plans without reading a pixel: per flood_chunks
        scan, items, slices, grid size, chunks, rows and bytes to read."""
        return _wait(self._con._inner.start_plan(self.sql), self._progress, "plan")


class Connection:
    """A floodsql session: local, or on a Ballista cluster of floodsql
    scheduler and executors."""

    def __init__(self, cluster=None, partitions=None, options=None):
        opts = [(str(k), _option_text(v)) for k, v in (options or {}).items()]
        with _raising:
            self._inner = _floodsql.Connection(cluster, partitions, opts)
        self.cluster = cluster

    def __repr__(self):
        return f"<floodsql.Connection {self.cluster or 'local'}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set(self, key: str, value) -> None:
        """Sets a session option, as SQL SET does."""
        with _raising:
            self._inner.set(key, _option_text(value))

    def sql(self, query: str, params: dict | None = None, progress=None) -> Result:
        """A query (lazy): ``${name}`` parameters bound from ``params``
        (str quoted, int/float as numbers, None as NULL)."""
        if params:
            with _raising:
                query = _floodsql.bind(query, list(params.items()))
        return Result(self, query, progress)


def _option_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def connect(cluster: str | None = None, *, partitions: int | None = None, options: dict | None = None) -> Connection:
    """A session: local by default, or a cluster at ``df://HOST:PORT``;
    ``options``: session options (``{"floodsql.max_items": 500}``)."""
    return Connection(cluster, partitions, options)


# ------------------------------------------------------------ one-call jobs


def _search_options(con, max_items=None, filter=None, groupby=None, missing_assets=None):
    """Sets the search's options on `con`: ``filter`` (CQL2 text, or
    cql2-json as a dict), ``groupby`` ("time" or "solar_day", as odc-stac
    names it), ``missing_assets`` ({asset: "error" | "nodata" | value}, "*"
    for any asset, or the option's text)."""
    if max_items is not None:
        con.set("floodsql.max_items", max_items)
    if filter is not None:
        con.set("floodsql.filter", filter if isinstance(filter, str) else json.dumps(filter))
    if groupby is not None:
        con.set("floodsql.group_by", groupby)
    if missing_assets is not None:
        if isinstance(missing_assets, dict):
            missing_assets = ",".join(f"{k}={v}" for k, v in missing_assets.items())
        con.set("floodsql.missing_assets", missing_assets)


def _scan(sql, stac_url, bbox, datetime, collection, asset, chunk, max_items, cluster, connection,
          progress, filter=None, groupby=None, missing_assets=None, **more):
    """The shipped or given scan SQL bound with a search's parameters, on
    `connection` (or a new one, local or on `cluster`)."""
    con = connection or connect(cluster)
    _search_options(con, max_items, filter, groupby, missing_assets)
    p = _scan_params(stac_url, bbox, datetime, collection, asset, chunk)
    p.update(more)
    return con.sql(sql, p, progress)


def max_flood_extent(
    stac_url,
    bbox,
    datetime=None,
    *,
    collection: str | None = _DEFAULT_COLLECTION,
    asset: str = "ensemble_flood_extent",
    chunk: int | None = None,
    max_items: int | None = None,
    cluster: str | None = None,
    connection: Connection | None = None,
    progress=None,
    filter: str | dict | None = None,
    groupby: str | None = None,
    missing_assets: dict | str | None = None,
):
    """The tutorial's maximum flood extent as an xarray.DataArray (uint8, 1
    where any time slice saw flood, else 0; dims ``y, x``) on the first
    item's grid, as odc-stac loads it.

    The real feed: ``filter`` a CQL2 filter on the items (text, or
    cql2-json as a dict; sent to the API's filter extension),
    ``groupby="solar_day"`` fuses the frames of a pass into one slice per
    day as odc-stac's option of that name, ``missing_assets={"exclusion_mask":
    0}`` reads items lacking an asset ("nodata", a value; default: an
    error)."""
    r = _scan(_SQL["max_flood_extent"], stac_url, bbox, datetime, collection, asset, chunk, max_items,
              cluster, connection, progress, filter, groupby, missing_assets)
    return r.to_xarray(name="max_flood_extent")


def raster(aggregate: str, stac_url, bbox, datetime=None, *, name: str | None = None, **scan):
    """Any per-pixel aggregate over the scan as an xarray.DataArray, e.g.
    ``"flood_extent_states(pixels)"``, ``"flood_count(pixels)"``,
    ``"flood_first_date(pixels, datetime)"``, ``"flood_frequency(pixels)"``;
    ``scan``: the keyword arguments of :func:`max_flood_extent`."""
    sql = (
        f"SELECT x_off, y_off, width, height, {aggregate} AS pixels "
        "FROM flood_chunks(${source}, ${collection}, ${bbox}, ${datetime}, ${asset}, ${chunk}) "
        "GROUP BY x_off, y_off, width, height"
    )
    r = _scan(sql, stac_url, bbox, datetime, **_scan_keywords(scan))
    return r.to_xarray(name=name or aggregate.split("(")[0])


def _scan_keywords(scan: dict) -> dict:
    known = {"collection": _DEFAULT_COLLECTION, "asset": "ensemble_flood_extent", "chunk": None,
             "max_items": None, "cluster": None, "connection": None, "progress": None,
             "filter": None, "groupby": None, "missing_assets": None}
    unknown = set(scan) - set(known)
    if unknown:
        raise InvalidInputError(f"unknown keyword argument(s): {', '.join(sorted(unknown))} "
                                f"(known: {', '.join(known)})")
    return {**known, **scan}


def daily_series(stac_url, bbox, datetime=None, **scan):
    """Per UTC day: flooded and observed km² and the share observed (the
    ``floodsql series`` table) as a pandas DataFrame; ``scan``: the keyword
    arguments of :func:`max_flood_extent`."""
    return _scan(_SQL["daily_series"], stac_url, bbox, datetime, **_scan_keywords(scan)).to_pandas()


def zonal_stats(stac_url, bbox, datetime=None, *, regions, **scan):
    """Flood statistics per region of a vector file (the ``floodsql zonal``
    table) as a pandas DataFrame; ``scan``: the keyword arguments of
    :func:`max_flood_extent`."""
    return _scan(_SQL["zonal_stats"], stac_url, bbox, datetime, **_scan_keywords(scan),
                 regions=os.fspath(regions)).to_pandas()


def stac_items(stac_url, bbox, datetime=None, *, collection=_DEFAULT_COLLECTION, max_items=None,
               cluster=None, connection=None, progress=None, filter=None):
    """The items a search finds, one row each (``stac_items(...)``), as a
    pandas DataFrame; ``filter``: a CQL2 filter, as :func:`max_flood_extent`."""
    con = connection or connect(cluster)
    _search_options(con, max_items, filter)
    p = _scan_params(stac_url, bbox, datetime, collection, "ensemble_flood_extent", None)
    del p["asset"], p["chunk"]
    sql = "SELECT * FROM stac_items(${source}, ${collection}, ${bbox}, ${datetime})"
    return con.sql(sql, p, progress).to_pandas()
