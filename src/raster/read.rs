//! GDAL windowed reads. Only ever called from blocking threads (tokio's
//! `spawn_blocking`), never on the async runtime. Each thread keeps its own
//! small cache of open datasets (a GDAL dataset must not be shared by two
//! threads), so consecutive windows of one COG reuse its handle and GDAL's
//! block cache: a source block is decoded once per handle, not once per chunk.

use std::cell::RefCell;
use std::sync::Once;

use gdal::Dataset;

use crate::error::{Error, Result};

const CACHE_PER_THREAD: usize = 16;

thread_local! {
    static OPEN: RefCell<Vec<(String, Dataset)>> = const { RefCell::new(Vec::new()) };
}

/// Process-wide GDAL settings, applied once.
pub fn configure_gdal() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // GDAL's own messages: failures come back to us as errors (and are
        // reported once, with the item), warnings are shown.
        gdal::config::set_error_handler(|class, _no, msg| {
            if class == gdal::errors::CplErrType::Warning {
                eprintln!("GDAL warning: {msg}");
            }
        });
        let set = |k: &str, v: &str| {
            if std::env::var_os(k).is_none() {
                let _ = gdal::config::set_config_option(k, v);
            }
        };
        set("GDAL_CACHEMAX", "512");
        set("GDAL_PAM_ENABLED", "NO");
        set("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
        set("GDAL_HTTP_MAX_RETRY", "3");
        set("GDAL_HTTP_RETRY_DELAY", "1");
        set("GDAL_HTTP_TIMEOUT", "60");
        set("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif,.tiff,.TIF,.TIFF");
    });
}

/// Reads band 1 of `path`, window (x, y, w, h) in the file's pixel space, as
/// u8. `expect` is the size (cols, rows) the STAC metadata declares.
pub fn read_window(
    path: &str,
    expect: (usize, usize),
    (x, y, w, h): (usize, usize, usize, usize),
) -> Result<Vec<u8>> {
    configure_gdal();
    OPEN.with(|cell| {
        let mut open = cell.borrow_mut();
        let pos = match open.iter().position(|(p, _)| p == path) {
            Some(i) => i,
            None => {
                let ds = Dataset::open(path)
                    .map_err(|e| Error::Gdal(format!("cannot open '{path}': {e}")))?;
                if ds.raster_size() != expect {
                    return Err(Error::Gdal(format!(
                        "'{path}' is {}x{} pixels but its STAC item's proj:shape says {}x{}",
                        ds.raster_size().0,
                        ds.raster_size().1,
                        expect.0,
                        expect.1
                    )));
                }
                if open.len() >= CACHE_PER_THREAD {
                    open.remove(0);
                }
                open.push((path.to_string(), ds));
                open.len() - 1
            }
        };
        let ds = &open[pos].1;
        let band = ds
            .rasterband(1)
            .map_err(|e| Error::Gdal(format!("'{path}' has no band 1: {e}")))?;
        let buf = band
            .read_as::<u8>((x as isize, y as isize), (w, h), (w, h), None)
            .map_err(|e| Error::Gdal(format!("reading '{path}' window {x},{y} {w}x{h}: {e}")))?;
        Ok(buf.into_shape_and_vec().1)
    })
}
