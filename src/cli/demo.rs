//! `floodsql demo`: generate a small synthetic scene and compute its maximum
//! flood extent locally — no network, no cluster.

use std::path::PathBuf;

use clap::Args;

use super::extent::ExtentArgs;
use crate::options::{DEFAULT_CHUNK_SIZE, DEFAULT_PAGE_SIZE};
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
    let spec = SynthSpec::preset(a.scale, 7);
    let pb = super::progress_bar(quiet, "{bar:40} {pos}/{len} synthetic COGs {elapsed}");
    let scene = generate(&spec, &a.out.join("catalog"), &pb)?;
    let b = scene.bbox;
    let dir = a.out.canonicalize()?;
    let args = ExtentArgs {
        stac_url: scene.items_file.display().to_string(),
        collection: Some(COLLECTION.into()),
        bbox: format!("{},{},{},{}", b[0], b[1], b[2], b[3]),
        datetime: Some(scene.datetime.clone()),
        asset: ASSET.into(),
        out: dir.join("max_flood_extent.tif"),
        parquet: Some(dir.join("max_flood_extent.parquet")),
        png: Some(dir.join("max_flood_extent.png")),
        chunk: DEFAULT_CHUNK_SIZE,
        page_size: DEFAULT_PAGE_SIZE,
        max_items: None,
        partitions: None,
        set: Vec::new(),
        cluster: None,
        print_sql: false,
        dry_run: false,
    };
    eprintln!(
        "floodsql demo: synthetic GFM scene with {} items in {}",
        scene.n_items,
        scene.dir.display()
    );
    let (tif, pq, png) = (args.out.clone(), args.parquet.clone(), args.png.clone());
    super::extent::run(args, quiet)?;
    eprintln!(
        "wrote {}\n      {}\n      {}",
        tif.display(),
        pq.map(|p| p.display().to_string()).unwrap_or_default(),
        png.map(|p| p.display().to_string()).unwrap_or_default()
    );
    Ok(())
}
