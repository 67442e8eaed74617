//! Geometry types at the bottom of the stack: the lon/lat search box, pixel
//! windows on the output grid and the overlap of a source with a window.
//! Plain data, no GDAL.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A lon/lat bounding box (EPSG:4326, x = longitude).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bbox {
    pub(crate) minx: f64,
    pub(crate) miny: f64,
    pub(crate) maxx: f64,
    pub(crate) maxy: f64,
}

impl std::fmt::Display for Bbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{},{}", self.minx, self.miny, self.maxx, self.maxy)
    }
}

impl Bbox {
    /// Parses `MINX,MINY,MAXX,MAXY` (degrees).
    pub(crate) fn parse(s: &str) -> Result<Bbox> {
        let bad = |m: &str| Error::BadBbox(s.to_string(), m.to_string());
        let v: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("expected four numbers MINX,MINY,MAXX,MAXY"))?;
        let [minx, miny, maxx, maxy] = v[..] else {
            return Err(bad("expected four numbers MINX,MINY,MAXX,MAXY"));
        };
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad("numbers must be finite"));
        }
        let b = Bbox {
            minx,
            miny,
            maxx,
            maxy,
        };
        if !(-180.0..=180.0).contains(&b.minx) || !(-180.0..=180.0).contains(&b.maxx) {
            return Err(bad("longitudes must be within -180..180"));
        }
        if !(-90.0..=90.0).contains(&b.miny) || !(-90.0..=90.0).contains(&b.maxy) {
            return Err(bad("latitudes must be within -90..90"));
        }
        if b.minx >= b.maxx || b.miny >= b.maxy {
            return Err(bad("MINX must be < MAXX and MINY < MAXY"));
        }
        Ok(b)
    }

    /// The box as a GeoJSON polygon (the `intersects` pystac-client sends).
    pub(crate) fn to_geojson(self) -> Value {
        let (a, b, c, d) = (self.minx, self.miny, self.maxx, self.maxy);
        json!({"type": "Polygon", "coordinates": [[[c, b], [c, d], [a, d], [a, b], [c, b]]]})
    }

    /// Whether `[minx, miny, maxx, maxy]` touches this box.
    pub(crate) fn intersects(&self, o: &[f64; 4]) -> bool {
        self.minx <= o[2] && o[0] <= self.maxx && self.miny <= o[3] && o[1] <= self.maxy
    }

    /// `[minx, miny, maxx, maxy]`.
    pub(crate) fn to_array(self) -> [f64; 4] {
        [self.minx, self.miny, self.maxx, self.maxy]
    }
}

/// A pixel window: top-left corner and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Window {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) width: usize,
    pub(crate) height: usize,
}

impl Window {
    /// Pixels in the window.
    pub(crate) fn area(&self) -> usize {
        self.width * self.height
    }

    /// The part two windows share, if any.
    pub(crate) fn intersect(&self, o: Window) -> Option<Window> {
        let (x0, y0) = (self.x.max(o.x), self.y.max(o.y));
        let x1 = (self.x + self.width).min(o.x + o.width);
        let y1 = (self.y + self.height).min(o.y + o.height);
        (x0 < x1 && y0 < y1).then(|| Window {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        })
    }
}

#[cfg(test)]
mod window_tests {
    use super::Window;

    #[test]
    fn intersections() {
        let w = |x, y, width, height| Window {
            x,
            y,
            width,
            height,
        };
        assert_eq!(
            w(0, 0, 10, 10).intersect(w(5, 8, 10, 10)),
            Some(w(5, 8, 5, 2))
        );
        assert_eq!(w(0, 0, 10, 10).intersect(w(10, 0, 5, 5)), None);
        assert_eq!(w(20, 20, 5, 5).intersect(w(0, 0, 10, 10)), None);
    }
}

/// Where a source raster meets an output window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overlap {
    /// Top-left of the overlap, relative to the output window.
    pub(crate) dst_x: usize,
    pub(crate) dst_y: usize,
    /// The overlap in the source's own pixel space.
    pub(crate) src: Window,
}

/// The overlap of a raster placed at (`col_off`, `row_off`) with size
/// `width` x `height` (output pixel coordinates) and the output window `w`.
pub(crate) fn overlap(
    col_off: i64,
    row_off: i64,
    width: usize,
    height: usize,
    w: Window,
) -> Option<Overlap> {
    let x0 = (w.x as i64).max(col_off);
    let y0 = (w.y as i64).max(row_off);
    let x1 = ((w.x + w.width) as i64).min(col_off + width as i64);
    let y1 = ((w.y + w.height) as i64).min(row_off + height as i64);
    (x0 < x1 && y0 < y1).then(|| Overlap {
        dst_x: (x0 - w.x as i64) as usize,
        dst_y: (y0 - w.y as i64) as usize,
        src: Window {
            x: (x0 - col_off) as usize,
            y: (y0 - row_off) as usize,
            width: (x1 - x0) as usize,
            height: (y1 - y0) as usize,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_parse() {
        let b = Bbox::parse("67.398376,26.197341,69.027100,27.591066").unwrap();
        assert_eq!(b.maxx, 69.0271);
        for bad in [
            "1,2,3",
            "a,b,c,d",
            "10,0,5,1",
            "0,0,200,1",
            "0,-95,1,1",
            "1,2,3,4,5",
            "0,0,inf,1",
        ] {
            assert!(Bbox::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlaps() {
        let w = Window {
            x: 100,
            y: 50,
            width: 100,
            height: 100,
        };
        // a source straddling the window's top-left corner
        let o = overlap(80, 30, 40, 40, w).unwrap();
        assert_eq!((o.dst_x, o.dst_y), (0, 0));
        assert_eq!(
            o.src,
            Window {
                x: 20,
                y: 20,
                width: 20,
                height: 20
            }
        );
        // negative offsets, inside
        let o = overlap(-10, -10, 500, 500, w).unwrap();
        assert_eq!((o.dst_x, o.dst_y, o.src.x, o.src.y), (0, 0, 110, 60));
        assert_eq!((o.src.width, o.src.height), (100, 100));
        // touching edges do not overlap
        assert!(overlap(200, 50, 10, 10, w).is_none());
        assert!(overlap(90, 50, 10, 10, w).is_none());
    }
}
