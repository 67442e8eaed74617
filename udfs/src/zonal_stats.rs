//! `zonal_stats(zones, states, pixel_areas [, first_day, last_day])`: the
//! flood statistics of each region within one chunk, as a list with one
//! struct per region that has a pixel in the chunk:
//!
//! | field | meaning |
//! |---|---|
//! | `region_id` | the zone (`flood_chunks(…, regions).zones`) |
//! | `pixels`, `observed_pixels`, `flooded_pixels` | pixel counts |
//! | `region_km2`, `observed_km2`, `flooded_km2` | true (ellipsoidal) areas of those pixels |
//! | `first_flooded`, `last_flooded` | earliest / latest day a pixel of the region was flooded (NULL: never, or no dates given) |
//!
//! `states` is a uint8 raster coded 1 = flooded, 255 = never observed,
//! anything else observed and not flooded (`flood_extent_states`,
//! `flood_max_extent`); `first_day`/`last_day` the u16 rasters of
//! `flood_first_date`/`flood_last_date`. Summing the structs of every chunk
//! per `region_id` gives a region's statistics over the grid (`UNNEST` then
//! `GROUP BY`, see `sql/zonal_stats.sql`): the work grows with chunks, not
//! with regions x pixels. NULL in any argument gives NULL.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Float64Builder, Int64Builder, ListBuilder,
    StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::is_binary;
use crate::pixel_areas::PixelAreas;

/// The fields of one region's struct.
pub fn zonal_fields() -> Fields {
    static F: LazyLock<Fields> = LazyLock::new(|| {
        Fields::from(vec![
            Field::new("region_id", DataType::Int64, false),
            Field::new("pixels", DataType::Int64, false),
            Field::new("observed_pixels", DataType::Int64, false),
            Field::new("flooded_pixels", DataType::Int64, false),
            Field::new("region_km2", DataType::Float64, false),
            Field::new("observed_km2", DataType::Float64, false),
            Field::new("flooded_km2", DataType::Float64, false),
            Field::new("first_flooded", DataType::Date32, true),
            Field::new("last_flooded", DataType::Date32, true),
        ])
    });
    F.clone()
}

fn return_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(zonal_fields()),
        true,
    )))
}

/// One region's sums within a chunk.
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    pixels: i64,
    observed: i64,
    flooded: i64,
    m2: f64,
    observed_m2: f64,
    flooded_m2: f64,
    /// days since 1970 (0: none)
    first: u16,
    last: u16,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ZonalStats {
    signature: Signature,
    doc: Documentation,
}

impl Default for ZonalStats {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            doc: Documentation::builder(
                DocSection {
                    include: true,
                    label: "floodsql pixel functions",
                    description: None,
                },
                "Per-region flood statistics of one chunk: a list of structs (region_id, pixels, observed_pixels, flooded_pixels, region_km2, observed_km2, flooded_km2, first_flooded, last_flooded), one per region with a pixel in the chunk. UNNEST it and sum per region_id over the chunks.",
                "zonal_stats(zones, states, pixel_areas [, first_day, last_day])",
            )
            .with_argument("zones", "the chunk's zones (flood_chunks(..., regions).zones)")
            .with_argument("states", "a uint8 raster: 1 flooded, 255 never observed, else observed (flood_extent_states)")
            .with_argument("pixel_areas", "the chunk's pixel areas (flood_chunks.pixel_areas)")
            .with_argument("first_day", "optional: flood_first_date of the chunk")
            .with_argument("last_day", "optional: flood_last_date of the chunk")
            .with_sql_example("see sql/zonal_stats.sql")
            .build(),
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// The per-region sums of one chunk.
fn chunk_stats(
    zones: &[u8],
    states: &[u8],
    areas: &PixelAreas,
    dates: Option<(&[u8], &[u8])>,
) -> Result<BTreeMap<u32, Acc>> {
    let (w, n) = (areas.width, areas.width * areas.height);
    if zones.len() != 4 * n || states.len() != n {
        return exec_err!(
            "zonal_stats: a {}x{} chunk needs {} zone bytes and {n} state bytes, got {} and {}: pass one chunk's zones, states and pixel_areas",
            areas.width,
            areas.height,
            4 * n,
            zones.len(),
            states.len()
        );
    }
    if let Some((f, l)) = dates {
        if f.len() != 2 * n || l.len() != 2 * n {
            return exec_err!(
                "zonal_stats: the date rasters of a {}x{} chunk need {} bytes each, got {} and {}",
                areas.width,
                areas.height,
                2 * n,
                f.len(),
                l.len()
            );
        }
    }
    let mut out: BTreeMap<u32, Acc> = BTreeMap::new();
    // runs of one zone are the rule: the current zone's sums are kept at hand
    let mut cur: Option<(u32, Acc)> = None;
    areas.for_each_row(|r, row_m2| {
        for (x, &m2) in row_m2.iter().enumerate() {
            let i = r * w + x;
            let z = u32::from_le_bytes([
                zones[4 * i],
                zones[4 * i + 1],
                zones[4 * i + 2],
                zones[4 * i + 3],
            ]);
            if z == 0 {
                continue;
            }
            if cur.map(|c| c.0) != Some(z) {
                if let Some((lz, a)) = cur.take() {
                    out.insert(lz, a);
                }
                cur = Some((z, out.remove(&z).unwrap_or_default()));
            }
            let Some((_, acc)) = cur.as_mut() else {
                continue;
            };
            let s = states[i];
            acc.pixels += 1;
            acc.m2 += m2;
            if s != 255 {
                acc.observed += 1;
                acc.observed_m2 += m2;
            }
            if s == 1 {
                acc.flooded += 1;
                acc.flooded_m2 += m2;
            }
            if let Some((f, l)) = dates {
                let (f, l) = (u16_at(f, i), u16_at(l, i));
                if f != 0 && (acc.first == 0 || f < acc.first) {
                    acc.first = f;
                }
                if l > acc.last {
                    acc.last = l;
                }
            }
        }
    });
    if let Some((lz, a)) = cur {
        out.insert(lz, a);
    }
    Ok(out)
}

impl ScalarUDFImpl for ZonalStats {
    fn name(&self) -> &str {
        "zonal_stats"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if (arg_types.len() == 3 || arg_types.len() == 5) && arg_types.iter().all(is_binary) {
            return Ok(vec![DataType::LargeBinary; arg_types.len()]);
        }
        plan_err!(
            "zonal_stats takes (zones, states, pixel_areas [, first_day, last_day]), all binary rasters, got {arg_types:?}"
        )
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.clone().into_array(n))
            .collect::<Result<_>>()?;
        let bins: Vec<_> = arrays.iter().map(|a| a.as_binary::<i64>()).collect();
        let fields = zonal_fields();
        let mut out = ListBuilder::new(StructBuilder::from_fields(fields.clone(), 0))
            .with_field(Arc::new(Field::new("item", DataType::Struct(fields), true)));
        for i in 0..n {
            if bins.iter().any(|b| b.is_null(i)) {
                out.append_null();
                continue;
            }
            let areas = PixelAreas::decode(bins[2].value(i))?;
            let dates = (bins.len() == 5).then(|| (bins[3].value(i), bins[4].value(i)));
            let stats = chunk_stats(bins[0].value(i), bins[1].value(i), &areas, dates)?;
            let sb = out.values();
            for (z, a) in stats {
                let int = |sb: &mut StructBuilder, k: usize, v: i64| {
                    if let Some(b) = sb.field_builder::<Int64Builder>(k) {
                        b.append_value(v)
                    }
                };
                let km2 = |sb: &mut StructBuilder, k: usize, v: f64| {
                    if let Some(b) = sb.field_builder::<Float64Builder>(k) {
                        b.append_value(v / 1e6)
                    }
                };
                int(sb, 0, z as i64);
                int(sb, 1, a.pixels);
                int(sb, 2, a.observed);
                int(sb, 3, a.flooded);
                km2(sb, 4, a.m2);
                km2(sb, 5, a.observed_m2);
                km2(sb, 6, a.flooded_m2);
                for (k, d) in [(7, a.first), (8, a.last)] {
                    if let Some(b) = sb.field_builder::<Date32Builder>(k) {
                        b.append_option((d != 0).then_some(d as i32));
                    }
                }
                sb.append(true);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_region_against_a_naive_count() {
        // 5 x 3 window, areas growing with x and y
        let (w, h) = (5usize, 3usize);
        let nodes = |n: usize| (0..n as u32).collect::<Vec<u32>>();
        let areas = PixelAreas {
            width: w,
            height: h,
            grid_m2: 0.0,
            xs: nodes(w),
            ys: nodes(h),
            values: (0..w * h).map(|i| 1e6 + (i as f64) * 1e3).collect(),
        };
        let zones_v: Vec<u32> = vec![0, 1, 1, 2, 2, 1, 1, 0, 2, 2, 3, 3, 3, 3, 1];
        let states: Vec<u8> = vec![1, 1, 0, 255, 1, 1, 255, 1, 0, 1, 0, 0, 0, 255, 1];
        let first: Vec<u16> = (0..15)
            .map(|i| if states[i] == 1 { 100 + i as u16 } else { 0 })
            .collect();
        let zones: Vec<u8> = zones_v.iter().flat_map(|z| z.to_le_bytes()).collect();
        let fb: Vec<u8> = first.iter().flat_map(|d| d.to_le_bytes()).collect();
        let got = chunk_stats(&zones, &states, &areas, Some((&fb, &fb))).unwrap();
        for z in 1..=3u32 {
            let idx: Vec<usize> = (0..15).filter(|&i| zones_v[i] == z).collect();
            let a = got[&z];
            let m2 = |keep: &dyn Fn(usize) -> bool| -> f64 {
                idx.iter()
                    .filter(|&&i| keep(i))
                    .map(|&i| areas.values[i])
                    .sum()
            };
            assert_eq!(a.pixels as usize, idx.len());
            assert_eq!(
                a.flooded as usize,
                idx.iter().filter(|&&i| states[i] == 1).count()
            );
            assert_eq!(
                a.observed as usize,
                idx.iter().filter(|&&i| states[i] != 255).count()
            );
            assert!((a.m2 - m2(&|_| true)).abs() < 1e-6);
            assert!((a.flooded_m2 - m2(&|i| states[i] == 1)).abs() < 1e-6);
            let fl: Vec<u16> = idx.iter().map(|&i| first[i]).filter(|&d| d != 0).collect();
            assert_eq!(a.first, fl.iter().copied().min().unwrap_or(0));
            assert_eq!(a.last, fl.iter().copied().max().unwrap_or(0));
        }
        assert!(!got.contains_key(&0));
        // a wrong length is an error naming the problem
        let e = chunk_stats(&zones[4..], &states, &areas, None).unwrap_err();
        assert!(e.to_string().contains("zone bytes"), "{e}");
    }
}
