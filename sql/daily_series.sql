-- Daily flood series: per UTC day, what that day's acquisitions saw.
--
-- The inner query folds each day's time slices per chunk (a pixel flooded
-- in any of the day's slices is flooded that day; observed likewise), so a
-- day with several acquisitions counts every pixel once. The outer query
-- adds the chunks' true (ellipsoidal) areas: flooded and observed km² and
-- the share of the AOI's grid that was observed (areas added with `fsum`,
-- correctly rounded: the same bits however the chunks are partitioned).
-- Days without an acquisition have no row. `slices`: the day's time slices (acquisition
-- times) over the chunk that saw the most of them.
--
-- The scan stays streaming: the inner aggregate is ordered by chunk
-- (ordering_mode=PartiallySorted in EXPLAIN), so it holds one chunk's days
-- at a time.
--
-- Parameters (bound by `floodsql series`, or `floodsql sql --param name=value`):
-- source, collection, bbox, datetime, asset and chunk, as in
-- max_flood_extent.sql.
SELECT day,
       max(slices) AS slices,
       fsum(area_km2(flooded, areas)) AS flooded_km2,
       fsum(area_km2(observed, areas)) AS observed_km2,
       fsum(area_km2(observed, areas)) / max(grid_km2(areas)) AS share_observed
FROM (
    SELECT date_trunc('day', datetime) AS day,
           x_off,
           y_off,
           count(DISTINCT datetime) AS slices,
           flood_max_extent(pixels) AS flooded,
           flood_observed(pixels) AS observed,
           first_value(pixel_areas) AS areas
    FROM flood_chunks(${source}, ${collection}, ${bbox}, ${datetime}, ${asset}, ${chunk})
    GROUP BY date_trunc('day', datetime), x_off, y_off
)
GROUP BY day
ORDER BY day;
