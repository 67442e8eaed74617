"""An independent computation of the maximum flood extent, sharing no code
with floodsql (nor with odc-stac): a plain STAC API search (urllib, POST,
following `next` links), the output grid from pyproj (4 bbox corners, outward
snap with a 0.01 px tolerance), every COG read whole with rasterio and pasted
at its geotransform offset, slices fused first-valid-wins in (datetime, id)
order, and numpy for the aggregation: the extent, counts, GFM's three
states, first/last flood day (days since 1970-01-01, 0 = never) and the flood
frequency in percent (rounded half up, 255 = never observed), and per UTC
day the pixels flooded / observed in any of that day's slices.

usage: reference.py API_URL MINX,MINY,MAXX,MAXY START END OUT.npz [--asset NAME]
"""
import json
import math
import sys
import urllib.request
from collections import defaultdict
from urllib.parse import unquote, urlparse

import numpy as np
import pyproj
import rasterio


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def search(api, bbox, start, end, page=7):
    minx, miny, maxx, maxy = bbox
    body = {
        "collections": ["GFM"],
        "intersects": {"type": "Polygon", "coordinates": [[[maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny], [maxx, miny]]]},
        "datetime": f"{start}Z/{end}Z",
        "limit": page,
    }
    url, items = api.rstrip("/") + "/search", []
    while True:
        page_ = post(url, body)
        items += page_["features"]
        nxt = [link for link in page_.get("links", []) if link["rel"] == "next"]
        if not nxt or not page_["features"]:
            return items
        link = nxt[0]
        url = link["href"]
        body = ({**body, **link.get("body", {})} if link.get("merge") else link.get("body", body))


def maybe_int(v, tol=0.01):
    r = round(v)
    return r if abs(v - r) < tol else v


def grid(bbox, crs, res):
    t = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    minx, miny, maxx, maxy = bbox
    xs, ys = t.transform([minx, minx, maxx, maxx], [miny, maxy, miny, maxy])
    c0, c1 = math.floor(maybe_int(min(xs) / res)), math.ceil(maybe_int(max(xs) / res))
    r0, r1 = math.floor(maybe_int(min(ys) / res)), math.ceil(maybe_int(max(ys) / res))
    return c0, r1, max(1, c1 - c0), max(1, r1 - r0)  # left, top (lattice units), width, height


def slices_on_grid(api, bbox, start, end):
    """A search's items by datetime (a dict, in search order per slice) and
    the output grid of the first item's CRS and gsd: (slices, (left, top,
    width, height))."""
    items = search(api, bbox, start, end)
    p = items[0]["properties"]
    crs = pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])
    slices = defaultdict(list)
    for it in items:
        slices[it["properties"]["datetime"]].append(it)
    return slices, grid(bbox, crs, p["gsd"])


def paste(fused, data, tr, left, top, res, nodata, fill):
    """First valid wins: `data` (a COG read whole, transform `tr`) into the
    pixels of `fused` (the output grid at `left`, `top` in lattice units)
    that are still `fill`, where `data` is not `nodata`."""
    h, w = fused.shape
    col = round(tr.c / res - left)
    row = round(top - tr.f / res)
    # overlap of the tile with the output grid
    x0, y0 = max(col, 0), max(row, 0)
    x1, y1 = min(col + data.shape[1], w), min(row + data.shape[0], h)
    if x0 >= x1 or y0 >= y1:
        return
    dst = fused[y0:y1, x0:x1]
    srcw = data[y0 - row:y1 - row, x0 - col:x1 - col]
    take = (dst == fill) & (srcw != nodata)
    dst[take] = srcw[take]


def path_of(href):
    u = urlparse(href)
    return unquote(u.path) if u.scheme == "file" else href


def main():
    api, bbox_s, start, end, out = sys.argv[1:6]
    asset = sys.argv[sys.argv.index("--asset") + 1] if "--asset" in sys.argv else "ensemble_flood_extent"
    bbox = [float(v) for v in bbox_s.split(",")]
    items = search(api, bbox, start, end)
    p = items[0]["properties"]
    crs = pyproj.CRS.from_user_input(p.get("proj:wkt2") or p.get("proj:projjson") or p["proj:code"])
    res = items[0]["properties"]["gsd"]
    left, top, w, h = grid(bbox, crs, res)
    slices = defaultdict(list)
    for it in items:
        slices[it["properties"]["datetime"]].append(it)
    flooded = np.zeros((h, w), np.uint8)
    valid = np.zeros((h, w), np.uint16)
    count = np.zeros((h, w), np.uint16)
    first = np.zeros((h, w), np.uint16)  # days since 1970-01-01, 0 = never flooded
    last = np.zeros((h, w), np.uint16)
    days = {}  # UTC day -> (flooded in any of its slices, observed in any)
    for dt in sorted(slices):
        day = int(np.datetime64(dt.rstrip("Z").replace("+00:00", ""), "D").astype(np.int64))
        nodata = 255
        fused = np.full((h, w), nodata, np.uint8)
        for it in sorted(slices[dt], key=lambda i: i["id"]):
            a = it["assets"][asset]
            nodata = a.get("raster:bands", [{}])[0].get("nodata", 255)
            with rasterio.open(path_of(a["href"])) as src:
                data = src.read(1)
                tr = src.transform
            paste(fused, data, tr, left, top, res, nodata, fill=255)
        wet = (fused != 255) & (fused != 0)
        flooded |= wet.astype(np.uint8)
        count += wet
        valid += fused != 255
        f, o = days.setdefault(day, (np.zeros((h, w), bool), np.zeros((h, w), bool)))
        f |= wet
        o |= fused != 255
        first = np.where(wet & ((first == 0) | (first > day)), day, first).astype(np.uint16)
        last = np.where(wet, np.maximum(last, day), last).astype(np.uint16)
    states = np.where(flooded == 1, 1, np.where(valid > 0, 0, 255)).astype(np.uint8)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.floor(100.0 * count / np.maximum(valid, 1) + 0.5)
    frequency = np.where(valid > 0, pct, 255).astype(np.uint8)
    np.savez(out, extent=flooded, flood_count=count, valid_count=valid, states=states,
             first_day=first, last_day=last, frequency=frequency,
             days=np.array(sorted(days), np.int64),
             day_flooded=np.stack([days[d][0] for d in sorted(days)]),
             day_observed=np.stack([days[d][1] for d in sorted(days)]),
             geotransform=np.array([left * res, res, 0.0, top * res, 0.0, -res]),
             n_items=len(items), n_slices=len(slices))
    print(f"reference: {len(items)} items, {len(slices)} slices, grid {w}x{h}, flooded {int(flooded.sum())}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
