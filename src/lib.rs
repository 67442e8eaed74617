//! floodsql: SQL over flood data.
//!
//! STAC items and raster chunks become Arrow record batches; custom DataFusion
//! aggregates (crate `floodsql-udfs`) do the nodata-filtered flood maths; the
//! results are written as COG, Parquet and PNG — locally or on a Ballista
//! cluster.
//!
//! Modules form layers; a module only uses modules of lower layers (checked
//! by the `layering` test below; `docs/architecture.md` draws the graph):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | [`error`] | errors by kind |
//! | 1 | `geo`, `datetime`, `access`, `crs` | lon/lat boxes, pixel windows; STAC time intervals; what a catalogue may make floodsql read; CRSs the installed PROJ can use |
//! | 2 | `options`, `context`, `sqlargs`, `template`, `store` | session options; per-query state; SQL argument and template helpers; object stores (every remote byte) |
//! | 3 | `stac`, `vector` | search, items → Arrow, `stac_items(...)`; regions (OGR) → `regions(...)`, zones on a grid, flood polygons |
//! | 4 | `raster` | grid, GDAL reads, fusing, the scan, `flood_chunks(...)` |
//! | 5 | `output` | assembling, COG / Parquet / PNG writers |
//! | 6 | [`synth`] | synthetic GFM catalogues |
//! | 7 | `functions` | the function set |
//! | 8 | [`version`] | the version tag |
//! | 9 | `codec` | Ballista codecs |
//! | 10 | [`session`] | the one session factory |
//! | 11 | `cluster` | scheduler, executor, client roles |
//! | 12 | [`pipeline`] | SQL in, raster files out |
//! | 13 | [`cli`] | the command line (`anyhow` only here) |

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub(crate) mod access;
pub mod cli;
pub(crate) mod cluster;
pub(crate) mod codec;
pub(crate) mod context;
pub mod crs;
pub(crate) mod datetime;
pub mod error;
pub(crate) mod functions;
pub(crate) mod geo;
pub(crate) mod options;
pub(crate) mod output;
pub mod pipeline;
pub(crate) mod raster;
pub mod session;
pub(crate) mod sqlargs;
pub(crate) mod stac;
pub(crate) mod store;
pub mod synth;
pub(crate) mod template;
pub(crate) mod vector;
pub mod version;

pub use context::QueryProgress;
pub use error::{Error, ErrorKind, Result};
pub use raster::plan::ScanPlan;

/// The canonical query: the tutorial's maximum flood extent.
pub const MAX_FLOOD_EXTENT_SQL: &str = include_str!("../sql/max_flood_extent.sql");

/// The daily series query: per UTC day, flooded and observed km².
pub const DAILY_SERIES_SQL: &str = include_str!("../sql/daily_series.sql");

/// Flood statistics per region (`floodsql zonal`).
pub const ZONAL_STATS_SQL: &str = include_str!("../sql/zonal_stats.sql");

#[cfg(test)]
mod layering {
    //! No module uses a module of a higher layer (nor one of its own layer
    //! other than itself): read from the sources, `crate::NAME` paths.

    use std::collections::BTreeMap;
    use std::path::Path;

    /// The layer of each top-level module (the table in the crate docs).
    const LAYERS: &[(&str, u32)] = &[
        ("error", 0),
        ("geo", 1),
        ("datetime", 1),
        ("access", 1),
        ("crs", 1),
        ("options", 2),
        ("context", 2),
        ("sqlargs", 2),
        ("template", 2),
        ("store", 2),
        ("stac", 3),
        ("vector", 3),
        ("raster", 4),
        ("output", 5),
        ("synth", 6),
        ("functions", 7),
        ("version", 8),
        ("codec", 9),
        ("session", 10),
        ("cluster", 11),
        ("pipeline", 12),
        ("cli", 13),
    ];

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The crate modules a file's code names (`crate::x`, also inside
    /// `use crate::{x, y}`); comments (doc links) are not uses.
    fn used_modules(text: &str) -> Vec<String> {
        let code: Vec<&str> = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect();
        let text = code.join("\n");
        let mut out = Vec::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.push(name);
                }
            } else {
                out.push(
                    rest.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect(),
                );
            }
        }
        out.retain(|n| !n.is_empty() && n.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
        out
    }

    #[test]
    fn modules_only_use_lower_layers() {
        let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut violations = Vec::new();
        let mut checked = 0;
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let top = rel
                .iter()
                .next()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let Some(&own) = layers.get(top.as_str()) else {
                panic!("module '{top}' has no layer: add it to LAYERS and the crate docs");
            };
            let text = std::fs::read_to_string(&f).unwrap();
            for used in used_modules(&text) {
                let Some(&l) = layers.get(used.as_str()) else {
                    // crate-root items (`crate::Result`, `crate::MAX_FLOOD_EXTENT_SQL`)
                    continue;
                };
                checked += 1;
                if used != top && l >= own {
                    violations.push(format!(
                        "{} (layer {own}) uses crate::{used} (layer {l})",
                        rel.display()
                    ));
                }
            }
        }
        assert!(checked > 50, "the scan found only {checked} uses");
        assert!(
            violations.is_empty(),
            "layering violations:\n{}",
            violations.join("\n")
        );
    }

    #[test]
    fn the_scan_sees_grouped_uses() {
        assert_eq!(
            used_modules(
                "use crate::{geo::Bbox, raster::grid};\nlet x = crate::cli::run; // crate::synth"
            ),
            ["geo", "raster", "cli"]
        );
    }
}
