//! GDAL windowed reads. Only ever called from blocking threads (tokio's
//! `spawn_blocking`), never on the async runtime.
//!
//! One open handle per COG, shared by all threads through a mutex (a GDAL
//! dataset must never be used by two threads at once): GDAL's block cache
//! belongs to the handle, so a source block that two neighbouring chunks need
//! is decoded once, whichever thread reads it. The pool keeps the most
//! recently used handles open.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, Once};

use gdal::Dataset;

use crate::error::{Error, Result};

const MAX_OPEN: usize = 32;

#[derive(Default)]
struct Pool {
    open: HashMap<String, Arc<Mutex<Dataset>>>,
    order: VecDeque<String>,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(|| Mutex::new(Pool::default()));

fn pooled(path: &str, expect: (usize, usize)) -> Result<Arc<Mutex<Dataset>>> {
    if let Some(h) = POOL.lock().ok().and_then(|p| p.open.get(path).cloned()) {
        return Ok(h);
    }
    // open outside the pool lock (opening over http can be slow)
    let ds = Dataset::open(path).map_err(|e| Error::Gdal(format!("cannot open '{path}': {e}")))?;
    if ds.raster_size() != expect {
        return Err(Error::Gdal(format!(
            "'{path}' is {}x{} pixels but its STAC item's proj:shape says {}x{}",
            ds.raster_size().0,
            ds.raster_size().1,
            expect.0,
            expect.1
        )));
    }
    let mut pool = POOL
        .lock()
        .map_err(|_| Error::Other("dataset pool poisoned".into()))?;
    if let Some(h) = pool.open.get(path) {
        return Ok(h.clone());
    }
    let h = Arc::new(Mutex::new(ds));
    pool.open.insert(path.to_string(), h.clone());
    pool.order.push_back(path.to_string());
    while pool.order.len() > MAX_OPEN {
        if let Some(old) = pool.order.pop_front() {
            pool.open.remove(&old);
        }
    }
    Ok(h)
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
        set("GDAL_CACHEMAX", "32");
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
    let handle = pooled(path, expect)?;
    let ds = handle
        .lock()
        .map_err(|_| Error::Other(format!("dataset '{path}' poisoned")))?;
    let band = ds
        .rasterband(1)
        .map_err(|e| Error::Gdal(format!("'{path}' has no band 1: {e}")))?;
    let buf = band
        .read_as::<u8>((x as isize, y as isize), (w, h), (w, h), None)
        .map_err(|e| Error::Gdal(format!("reading '{path}' window {x},{y} {w}x{h}: {e}")))?;
    Ok(buf.into_shape_and_vec().1)
}
