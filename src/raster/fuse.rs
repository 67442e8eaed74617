//! Fusing one time slice over one output chunk: odc-stac's rule. Pixels start
//! as nodata; items are pasted in (datetime, id) order and a pixel takes the
//! first value that is not nodata (later items only fill pixels still nodata).

use crate::error::{Error, Result};
use crate::geo::Window;
use crate::raster::plan::Source;
use crate::raster::read::read_window;

/// Fuses `sources` (already in fusing order) over the output `window`.
/// Blocking: call from a blocking thread.
pub(crate) fn fuse_window(window: Window, sources: &[Source], fill: u8) -> Result<Vec<u8>> {
    let mut out = vec![fill; window.area()];
    for src in sources {
        let Some(o) = src.overlap(window) else {
            continue;
        };
        let buf =
            read_window(&src.path, (src.width, src.height), o.src).map_err(|e| Error::BadItem {
                item: src.item_id.clone(),
                message: format!("asset unreadable: {e}"),
            })?;
        let w = o.src.width;
        for r in 0..o.src.height {
            let dst = &mut out[(o.dst_y + r) * window.width + o.dst_x..][..w];
            paste_row(dst, &buf[r * w..][..w], fill, src.nodata);
        }
    }
    Ok(out)
}

/// dst = src where dst is still `fill` and src is not the source's nodata.
/// A select, not a branch: vectorises.
#[inline]
pub(crate) fn paste_row(dst: &mut [u8], src: &[u8], fill: u8, src_nodata: u8) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = if (*d == fill) & (s != src_nodata) {
            s
        } else {
            *d
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_valid_wins() {
        let mut d = vec![255, 255, 1, 0];
        paste_row(&mut d, &[0, 255, 0, 1], 255, 255);
        assert_eq!(d, vec![0, 255, 1, 0]);
    }
}
