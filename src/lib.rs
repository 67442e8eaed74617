//! floodsql: SQL over flood data.
//!
//! STAC items and raster chunks become Arrow record batches; custom DataFusion
//! aggregates (crate `floodsql-udfs`) do the nodata-filtered flood maths; the
//! results are written as COG, Parquet and PNG — locally or on a Ballista
//! cluster.
//!
//! Modules form layers; a module only uses modules of lower layers. The
//! layers are listed once, in the table of `docs/architecture.md`, which the
//! `layering` test below reads and checks every source file against.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub(crate) mod access;
pub mod cli;
pub(crate) mod cluster;
pub(crate) mod codec;
pub(crate) mod context;
pub(crate) mod cql;
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

    /// The layer of each top-level module: the table of
    /// `docs/architecture.md` (rows `| N | \`module\`, \`module\` | ... |`),
    /// the one place the layers are listed.
    fn layers() -> BTreeMap<String, u32> {
        let doc = include_str!("../docs/architecture.md");
        let mut out = BTreeMap::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let Ok(layer) = layer.parse::<u32>() else {
                continue;
            };
            for m in modules.split(',') {
                let m = m.trim().trim_matches(|c| c == '`' || c == '*');
                if !m.is_empty() {
                    out.insert(m.to_string(), layer);
                }
            }
        }
        out
    }

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
        let layers = layers();
        assert!(layers.len() > 20, "docs/architecture.md lists {layers:?}");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for m in layers.keys() {
            assert!(
                src.join(format!("{m}.rs")).is_file() || src.join(m).is_dir(),
                "docs/architecture.md lists a module '{m}' that does not exist"
            );
        }
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
                panic!("module '{top}' has no layer: add it to the table of docs/architecture.md");
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
