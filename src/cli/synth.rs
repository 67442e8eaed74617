//! `floodsql synth`: write a deterministic synthetic GFM catalogue.

use std::path::PathBuf;

use clap::Args;

use crate::synth::{generate, CrsForm, Scale, SynthSpec};

/// The synthetic catalogue's options.
#[derive(Debug, Args, Clone)]
pub(crate) struct SynthArgs {
    /// Scene size.
    #[arg(long, value_enum, default_value = "tiny")]
    pub(crate) scale: Scale,
    /// Output directory (items.json, items.ndjson, items/, cogs/, collection.json).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Seed of the pseudo-random layout.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Override the AOI the scene is built around: MINX,MINY,MAXX,MAXY.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) bbox: Option<String>,
    /// Override the tile size in pixels.
    #[arg(long)]
    pub(crate) tile_px: Option<usize>,
    /// Override the number of acquisitions (time slices).
    #[arg(long)]
    pub(crate) acquisitions: Option<usize>,
    /// How the items state their CRS (Equi7Grid Asia in each form).
    #[arg(long, value_enum, default_value = "legacy")]
    pub(crate) crs_form: CrsForm,
    /// Also write each item's reference_water_mask and exclusion_mask assets.
    #[arg(long)]
    pub(crate) masks: bool,
}

pub(crate) fn run(a: SynthArgs, quiet: bool) -> anyhow::Result<()> {
    let mut spec = SynthSpec::preset(a.scale, a.seed);
    spec.crs_form = a.crs_form;
    spec.masks = a.masks;
    if let Some(b) = &a.bbox {
        spec.bbox = crate::geo::Bbox::parse(b)?.to_array();
    }
    if let Some(t) = a.tile_px {
        anyhow::ensure!(
            (16..=40000).contains(&t),
            "--tile-px must be within 16..=40000"
        );
        spec.tile_px = t;
    }
    if let Some(n) = a.acquisitions {
        anyhow::ensure!(n >= 1, "--acquisitions must be >= 1");
        spec.acquisitions = n;
    }
    let pb = super::progress_bar(quiet, "{bar:40} {pos}/{len} COGs {elapsed}");
    let out = generate(&spec, &a.out, &pb)?;
    let b = out.bbox;
    println!(
        "wrote {} items to {}\nbbox: {},{},{},{}\ndatetime: {}",
        out.n_items,
        out.items_file.display(),
        b[0],
        b[1],
        b[2],
        b[3],
        out.datetime
    );
    Ok(())
}
