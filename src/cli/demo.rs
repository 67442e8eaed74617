//! `floodsql demo`: generate a small synthetic scene and compute its maximum
//! flood extent locally — no network, no cluster.

use std::path::PathBuf;

use clap::Args;

use super::extent::{ExtentArgs, ScanArgs};
use crate::synth::{generate, Scale, SynthSpec, ASSET, COLLECTION};

/// The demo's options.
#[derive(Debug, Args, Clone)]
pub(crate) struct DemoArgs {
    /// Where to put the scene and the outputs.
    #[arg(long, default_value = "floodsql-demo")]
    pub(crate) out: PathBuf,
    /// Scene size.
    #[arg(long, value_enum, default_value = "small")]
    pub(crate) scale: Scale,
}

pub(crate) fn run(a: DemoArgs, quiet: bool) -> anyhow::Result<()> {
    let mut spec = SynthSpec::preset(a.scale, 7);
    spec.masks = true; // the masks examples of the README run on the demo scene
    let pb = super::progress_bar(quiet, "{bar:40} {pos}/{len} synthetic COGs {elapsed}");
    let scene = generate(&spec, &a.out.join("catalog"), &pb)?;
    let b = scene.bbox;
    let dir = a.out.canonicalize()?;
    let mut scan = ScanArgs::new(
        scene.items_file.display().to_string(),
        format!("{},{},{},{}", b[0], b[1], b[2], b[3]),
        Some(scene.datetime.clone()),
    );
    scan.collection = Some(COLLECTION.into());
    scan.asset = ASSET.into();
    let args = ExtentArgs {
        scan,
        out: Some(dir.join("max_flood_extent.tif")),
        parquet: Some(dir.join("max_flood_extent.parquet")),
        png: Some(dir.join("max_flood_extent.png")),
        update: None,
    };
    eprintln!(
        "floodsql demo: a synthetic GFM scene ({} items, decoys included) in {}\n\
         searching  catalogue {}\n\
         \x20          collection {COLLECTION}, bbox {} (lon/lat), datetime {}",
        scene.n_items,
        scene.dir.display(),
        args.scan.stac_url,
        args.scan.bbox,
        scene.datetime
    );
    let again = rerun_commands(&args, &scene.regions_file.display().to_string());
    let zonal = super::zonal::ZonalArgs {
        scan: args.scan.clone(),
        regions: scene.regions_file.clone(),
        csv: None,
        parquet: None,
    };
    // what it wrote and the summary (stdout), then the same by hand
    super::extent::run(args, quiet)?;
    println!("\n{again}");
    println!(
        "\nflood statistics per region of {} (floodsql zonal; sql/zonal_stats.sql):",
        scene.regions_file.display()
    );
    super::zonal::run_brief(zonal, true)?;
    Ok(())
}

/// How to call the running binary: `floodsql` when that is what the PATH
/// finds, else its full path (after `cargo run` it is in the target dir),
/// with a hint on putting it on the PATH.
fn command_name() -> (String, String) {
    let Ok(exe) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return ("floodsql".into(), String::new());
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            d.join("floodsql")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        return ("floodsql".into(), String::new());
    }
    let full = exe.display().to_string();
    let hint = format!(
        " (floodsql is not on your PATH: `alias floodsql={full}`, or `cargo install --locked --path .` for a release build there)"
    );
    (full, hint)
}

/// The same job by hand: `floodsql extent …` and `floodsql sql -c …` on the
/// demo's catalogue, ready to paste into a POSIX shell.
fn rerun_commands(a: &ExtentArgs, regions: &str) -> String {
    // a shell word: bare when plain, else in double quotes when that is
    // safe, else in single quotes (each ' written as '\'')
    let sh = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._,:-+=@".contains(c))
        {
            s.to_string()
        } else if !s.contains(['"', '$', '`', '\\', '!']) {
            format!("\"{s}\"")
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    // a SQL string literal
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let dt = a.scan.datetime.clone().unwrap_or_default();
    // per time slice: how many pixels its acquisitions saw flooded
    let sql = format!(
        "SELECT datetime, count(*) AS chunks, sum(pixel_count(pixels, 1)) AS flooded_pixels \
         FROM flood_chunks({}, {}, {}, {}, {}) GROUP BY datetime ORDER BY datetime",
        lit(&a.scan.stac_url),
        lit(COLLECTION),
        lit(&a.scan.bbox),
        lit(&dt),
        lit(ASSET)
    );
    let (bin, hint) = command_name();
    format!(
        "the same by hand{hint}:\n  {bin} extent --stac-url {} --collection {COLLECTION} \\\n    \
         --bbox {} --datetime {} --out my_extent.tif --png my_extent.png\n  \
         {bin} sql -c {}\n  \
         {bin} zonal --stac-url {} --bbox {} --datetime {} \\\n    --regions {} --csv my_regions.csv",
        sh(&a.scan.stac_url),
        sh(&a.scan.bbox),
        sh(&dt),
        sh(&sql),
        sh(&a.scan.stac_url),
        sh(&a.scan.bbox),
        sh(&dt),
        sh(regions)
    )
}
