//! Shared fixtures: one tiny synthetic scene per test binary.

use std::path::PathBuf;
use std::sync::OnceLock;

use floodsql::synth::{generate, Scale, SynthSpec};

pub struct Scene {
    pub dir: PathBuf,
    pub bbox: String,
}

/// The tiny synthetic GFM scene (generated once, in a temp dir kept for the run).
pub fn tiny_scene() -> &'static Scene {
    static SCENE: OnceLock<Scene> = OnceLock::new();
    SCENE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("floodsql-it-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let spec = SynthSpec::preset(Scale::Tiny, 7);
        let out = generate(&spec, &dir, &indicatif::ProgressBar::hidden()).expect("synth");
        let b = out.bbox;
        Scene {
            dir: out.dir,
            bbox: format!("{},{},{},{}", b[0], b[1], b[2], b[3]),
        }
    })
}
