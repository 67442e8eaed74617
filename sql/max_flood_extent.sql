-- The EODC tutorial's maximum flood extent, as SQL.
--
--   result = data.where((data != 255) & (data != 0)).sum("time")
--   result = xr.where(result > 0, 1, 0).astype("uint8")
--
-- flood_chunks(...) searches the STAC source and yields one row per
-- (time slice, output chunk) with the fused uint8 pixels; flood_max_extent
-- folds the slices of each chunk into a 0/1 mask (the GeoTIFF: the column
-- named `pixels`). flood_observed marks the pixels any slice observed: the
-- quicklook tells "not flooded" from "never observed" with it, and it is a
-- column of the Parquet chunk table. The writers take the chunks
-- as they are aggregated and place them on the scan's grid (floodsql extent /
-- floodsql sql --out). No ORDER BY: sorting would hold every chunk (and make
-- the scan partitions wait on each other); Parquet rows come in scan order —
-- add `ORDER BY chunk_row, chunk_col` to your own SQL to sort them.
--
-- Parameters (bound by `floodsql extent`, or `floodsql sql --param name=value`):
--   ${source}      STAC API URL or static catalogue (file, directory, URL)
--   ${collection}  collection id(s), comma-separated, or NULL
--   ${bbox}        'MINX,MINY,MAXX,MAXY' in degrees (the AOI)
--   ${datetime}    'START/END' (RFC 3339, open ends '..'), or NULL
--   ${asset}       the asset to read, e.g. 'ensemble_flood_extent'
--   ${chunk}       chunk side in pixels
SELECT chunk_row,
       chunk_col,
       x_off,
       y_off,
       width,
       height,
       flood_max_extent(pixels) AS pixels,
       flood_observed(pixels) AS observed
FROM flood_chunks(${source}, ${collection}, ${bbox}, ${datetime}, ${asset}, ${chunk})
GROUP BY chunk_row, chunk_col, x_off, y_off, width, height;
