//! Text in the pictures, laid out and drawn with `ab_glyph` in DejaVu Sans
//! (bundled by the `dejavu` crate, so no system font is needed).
//!
//! [`Lettering`] wraps a plotters backend and takes over its text: plotters
//! 0.3.7 draws each glyph at the caret without the glyph's left bearing, so
//! narrow glyphs after wide ones drift ("0.1.0" came out as "0.1. 0",
//! "68.0127" as "68.01 27"). Here every glyph is placed at caret + kerning
//! and rasterised at its own pixel bounds; the box plotters lays labels out
//! by is the same advance-width box, and its top is the text's ascent.
//! Everything but text passes through to the wrapped backend unchanged.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
    FontStyle,
};

/// DejaVu Sans (regular or bold).
fn face(bold: bool) -> &'static FontRef<'static> {
    static REGULAR: OnceLock<FontRef<'static>> = OnceLock::new();
    static BOLD: OnceLock<FontRef<'static>> = OnceLock::new();
    let (cell, bytes) = if bold {
        (&BOLD, dejavu::sans::bold())
    } else {
        (&REGULAR, dejavu::sans::regular())
    };
    cell.get_or_init(|| FontRef::try_from_slice(bytes).expect("the bundled DejaVu Sans parses"))
}

/// Lays `text` out at `size` px (the font's ascent-to-descent height) with
/// its box's top-left at (0, 0): calls `ink(x, y, coverage)` for every
/// covered pixel and returns the box (advance width, height).
fn lay_out(text: &str, size: f64, bold: bool, mut ink: impl FnMut(i32, i32, f32)) -> (u32, u32) {
    let font = face(bold).as_scaled(PxScale::from(size as f32));
    let mut caret = 0.0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            caret += font.kern(p, id);
        }
        prev = Some(id);
        let glyph = id.with_scale_and_position(font.scale(), point(caret, font.ascent()));
        caret += font.h_advance(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            let (x0, y0) = (b.min.x as i32, b.min.y as i32);
            outline.draw(|x, y, cov| ink(x0 + x as i32, y0 + y as i32, cov));
        }
    }
    (caret.ceil().max(0.0) as u32, line_height(size, bold))
}

/// The height of a line of text at `size` px (ascent to descent), as
/// [`measure`] gives it for any text.
pub(crate) fn line_height(size: f64, bold: bool) -> u32 {
    let font = face(bold).as_scaled(PxScale::from(size as f32));
    (font.ascent() - font.descent()).ceil() as u32
}

/// The box `text` takes at `size` px: (width, height).
pub(crate) fn measure(text: &str, size: f64, bold: bool) -> (u32, u32) {
    lay_out(text, size, bold, |_, _, _| {})
}

/// A plotters backend whose text is drawn by [`lay_out`].
pub(crate) struct Lettering<B>(pub(crate) B);

type Drawn<B> = Result<(), DrawingErrorKind<<B as DrawingBackend>::ErrorType>>;

impl<B: DrawingBackend> DrawingBackend for Lettering<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Drawn<B> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Drawn<B> {
        self.0.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Drawn<B> {
        self.0.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S) -> Drawn<B> {
        self.0.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Drawn<B> {
        self.0.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Drawn<B> {
        self.0.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Drawn<B> {
        self.0.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        s: &S,
    ) -> Drawn<B> {
        self.0.fill_polygon(vert, s)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Drawn<B> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(measure(text, style.size(), is_bold(style)))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Drawn<B> {
        let colour = style.color();
        if colour.alpha == 0.0 {
            return Ok(());
        }
        let bold = is_bold(style);
        let (w, h) = measure(text, style.size(), bold);
        let (w, h) = (w as i32, h as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -w,
            HPos::Center => -w / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let turn = style.transform();
        let (sw, sh) = self.0.get_size();
        let mut result = Ok(());
        lay_out(text, style.size(), bold, |x, y, cov| {
            let (x, y) = turn.transform(x + dx, y + dy);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if result.is_ok()
                && cov > 0.0
                && (0..sw as i32).contains(&x)
                && (0..sh as i32).contains(&y)
            {
                let c = BackendColor {
                    alpha: colour.alpha * cov.min(1.0) as f64,
                    rgb: colour.rgb,
                };
                result = self.0.draw_pixel((x, y), c);
            }
        });
        result
    }
}

fn is_bold<S: BackendTextStyle>(style: &S) -> bool {
    matches!(style.style(), FontStyle::Bold)
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;

    /// The columns of a `w`-wide RGB image that hold ink, as runs
    /// (first, last) from left to right.
    fn ink_runs(rgb: &[u8], w: usize) -> Vec<(usize, usize)> {
        let inked: Vec<bool> = (0..w)
            .map(|x| rgb.chunks_exact(w * 3).any(|row| row[x * 3] < 128))
            .collect();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (x, &on) in inked.iter().enumerate() {
            match runs.last_mut() {
                Some((_, end)) if on && *end + 1 == x => *end = x,
                _ if on => runs.push((x, x)),
                _ => {}
            }
        }
        runs
    }

    /// `text` drawn at 13 px on white, by plotters' own text path or ours.
    fn drawn(text: &str, ours: bool) -> Vec<u8> {
        let (w, h) = (200usize, 30usize);
        let mut buf = vec![255u8; w * h * 3];
        {
            let style = crate::output::png::font(13.0);
            let plain = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32));
            if ours {
                let area = Lettering(plain).into_drawing_area();
                area.draw_text(text, &style, (10, 5)).unwrap();
                area.present().unwrap();
            } else {
                let area = plain.into_drawing_area();
                area.draw_text(text, &style, (10, 5)).unwrap();
                area.present().unwrap();
            }
        }
        buf
    }

    /// The widest gap between the glyphs of "0.1.0" (digits and dots
    /// alternate: every gap sits next to a dot).
    fn widest_gap(rgb: &[u8]) -> usize {
        let runs = ink_runs(rgb, 200);
        assert_eq!(runs.len(), 5, "five separate glyphs: {runs:?}");
        runs.windows(2).map(|p| p[1].0 - p[0].1).max().unwrap()
    }

    #[test]
    fn numbers_are_not_split() {
        // plotters' own path drifts the glyph after a dot to the right; the
        // gaps next to a dot differ by several pixels
        let gaps = |ours| {
            let runs = ink_runs(&drawn("0.1.0", ours), 200);
            runs.windows(2).map(|p| p[1].0 - p[0].1).collect::<Vec<_>>()
        };
        let theirs = gaps(false);
        let mine = gaps(true);
        let spread = |g: &[usize]| g.iter().max().unwrap() - g.iter().min().unwrap();
        assert!(spread(&theirs) >= 3, "plotters' gaps {theirs:?}");
        assert!(spread(&mine) <= 2, "our gaps {mine:?}");
        assert!(widest_gap(&drawn("0.1.0", true)) <= 4);
        // the text's ink lies inside the box measured for it, which starts
        // at the position asked for
        let (w, _) = measure("68.0127", 13.0, false);
        let runs = ink_runs(&drawn("68.0127", true), 200);
        assert!(
            runs[0].0 >= 10 && runs.last().unwrap().1 < 10 + w as usize,
            "{runs:?} in {w}"
        );
        // and no gap inside a number is wider than a digit's side bearings
        let inner = runs.windows(2).map(|p| p[1].0 - p[0].1).max().unwrap();
        assert!(inner <= 4, "{runs:?}");
    }
}
