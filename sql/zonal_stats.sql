-- Flood statistics per region (zonal statistics).
--
-- `flood_chunks(..., ${regions})` adds a `zones` column: each pixel's
-- region_id, the regions rasterised onto the scan's own grid and chunks
-- (a pixel belongs to the region its centre lies in; where regions overlap,
-- to the one listed last in the file; 0: no region). The inner query folds
-- the time slices per chunk, as the maximum flood extent does (three
-- states: flooded / observed dry / never observed, plus the first and last
-- day flooded); `zonal_stats` sums each chunk per region with the chunk's
-- true (ellipsoidal) pixel areas; the outer query adds the chunks up per
-- region and joins the regions' attributes. Areas are added with `fsum`
-- (correctly rounded), so the table has the same bits on one partition,
-- many, or a cluster. Only the part of a region on
-- the scan's grid (the bbox) counts: region_km2 is that part's area.
-- Regions with no pixel on the grid have NULL statistics.
--
-- The work grows with chunks, not with regions x pixels, and stays
-- streaming (the inner aggregate is ordered by chunk).
--
-- Parameters (bound by `floodsql zonal`, or `floodsql sql --param name=value`):
-- source, collection, bbox, datetime, asset and chunk, as in
-- max_flood_extent.sql, and regions: a vector file (GeoJSON, GeoPackage,
-- Shapefile, ...) of polygons in any CRS.
WITH chunks AS (
    SELECT x_off,
           y_off,
           flood_extent_states(pixels) AS states,
           flood_first_date(pixels, datetime) AS first_day,
           flood_last_date(pixels, datetime) AS last_day,
           first_value(zones) AS zones,
           first_value(pixel_areas) AS areas
    FROM flood_chunks(${source}, ${collection}, ${bbox}, ${datetime}, ${asset}, ${chunk}, ${regions})
    GROUP BY x_off, y_off
),
parts AS (
    SELECT unnest(zonal_stats(zones, states, areas, first_day, last_day)) AS z
    FROM chunks
),
per_region AS (
    SELECT z['region_id'] AS region_id,
           fsum(z['flooded_km2']) AS flooded_km2,
           fsum(z['observed_km2']) AS observed_km2,
           fsum(z['region_km2']) AS region_km2,
           sum(z['flooded_pixels']) AS flooded_pixels,
           sum(z['observed_pixels']) AS observed_pixels,
           sum(z['pixels']) AS pixels,
           min(z['first_flooded']) AS first_flooded,
           max(z['last_flooded']) AS last_flooded
    FROM parts
    GROUP BY z['region_id']
)
SELECT r.* EXCLUDE (geometry),
       p.region_id IS NOT NULL AS on_grid,
       p.flooded_km2,
       p.observed_km2,
       p.observed_km2 / p.region_km2 AS share_observed,
       p.region_km2,
       p.flooded_pixels,
       p.observed_pixels,
       p.pixels,
       p.first_flooded,
       p.last_flooded
FROM regions(${regions}) r
LEFT JOIN per_region p ON r.region_id = p.region_id
ORDER BY r.region_id;
