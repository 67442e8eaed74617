//! A daily series out (the result of `sql/daily_series.sql`, or any table
//! with a timestamp column `day` and numeric columns): CSV, Parquet and a
//! line chart PNG of its `*_km2` columns, each written atomically and the
//! set all or nothing. Blocking (GDAL encodes the PNG).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use parquet::arrow::ArrowWriter;
use plotters::prelude::*;

use crate::context::Cancel;
use crate::error::{io_err, Error, Result};
use crate::output::lettering::Lettering;
use crate::output::png::{bold, day_label, font, write_rgb};
use crate::output::transaction::OutputTransaction;
use crate::output::Format;

/// Where a series goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeriesOutputs {
    pub(crate) csv: Option<PathBuf>,
    pub(crate) parquet: Option<PathBuf>,
    pub(crate) png: Option<PathBuf>,
}

impl SeriesOutputs {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.csv, &self.parquet, &self.png]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    /// Whether any output is asked for.
    pub(crate) fn any(&self) -> bool {
        self.paths().next().is_some()
    }

    /// The transaction these outputs are written in: refused when a
    /// directory is missing, two outputs are one file or a name says
    /// another format.
    pub(crate) fn transaction(&self, cancel: Cancel) -> Result<OutputTransaction> {
        Format::CSV.check("--csv", self.csv.as_deref())?;
        Format::PARQUET.check("--parquet", self.parquet.as_deref())?;
        Format::PNG.check("--png", self.png.as_deref())?;
        OutputTransaction::new(self.paths(), cancel)
    }
}

/// Writes `batches` to every output asked for, in one transaction (all or
/// nothing; files replaced are put back when it fails or is cancelled).
pub(crate) fn write_series(
    batches: &[RecordBatch],
    outputs: &SeriesOutputs,
    title: &str,
    subtitle: &str,
    cancel: Cancel,
) -> Result<()> {
    let mut tx = outputs.transaction(cancel)?;
    if let Some(p) = &outputs.csv {
        tx.stage(p, |tmp| {
            let f = File::create(tmp).map_err(io_err(tmp))?;
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(f);
            for b in batches {
                w.write(b).map_err(|e| out_err(p, format!("CSV: {e}")))?;
            }
            Ok(())
        })?;
    }
    if let Some(p) = &outputs.parquet {
        tx.stage(p, |tmp| {
            let f = File::create(tmp).map_err(io_err(tmp))?;
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| out_err(p, "no rows to write".into()))?;
            let mut w = ArrowWriter::try_new(f, schema, None)
                .map_err(|e| out_err(p, format!("Parquet: {e}")))?;
            for b in batches {
                w.write(b)
                    .map_err(|e| out_err(p, format!("Parquet: {e}")))?;
            }
            w.close().map_err(|e| out_err(p, format!("Parquet: {e}")))?;
            Ok(())
        })?;
    }
    if let Some(p) = &outputs.png {
        let (rgb, w, h) = chart(batches, title, subtitle)?;
        tx.stage(p, |tmp| write_rgb(&rgb, w, h, tmp, p))?;
    }
    tx.commit()
}

fn out_err(p: &Path, message: String) -> Error {
    Error::Output {
        path: p.display().to_string(),
        message,
    }
}

/// A series as the chart reads it: its days (days since 1970-01-01,
/// fractional), the areas drawn as bars (every `*_km2` column but
/// `observed_km2`), and the coverage drawn on the second axis.
#[derive(Debug, Default)]
struct Lines {
    days: Vec<f64>,
    bars: Vec<(String, Vec<f64>)>,
    coverage: Option<Coverage>,
}

/// What the second axis shows: the share of the area observed (a
/// `share_observed` column, 0..1, drawn in %) or, without one, the
/// `observed_km2` column.
#[derive(Debug)]
struct Coverage {
    label: &'static str,
    percent: bool,
    values: Vec<f64>,
}

/// A numeric column as f64 (nulls as NaN).
fn floats(c: &dyn Array, name: &str) -> Result<Vec<f64>> {
    let v = arrow::compute::cast(c, &DataType::Float64).map_err(|e| {
        out_err(
            Path::new("series chart"),
            format!("column '{name}' is not numeric: {e}"),
        )
    })?;
    let v = v.as_primitive::<Float64Type>();
    Ok((0..v.len())
        .map(|i| if v.is_valid(i) { v.value(i) } else { f64::NAN })
        .collect())
}

fn lines(batches: &[RecordBatch]) -> Result<Lines> {
    let bad = |m: String| out_err(Path::new("series chart"), m);
    let mut out = Lines::default();
    let (mut share, mut observed) = (Vec::new(), Vec::new());
    for b in batches {
        let day = b
            .column_by_name("day")
            .ok_or_else(|| bad("the series has no 'day' column".into()))?;
        let day = arrow::compute::cast(day, &DataType::Timestamp(TimeUnit::Microsecond, None))
            .map_err(|e| bad(format!("column 'day' is not a timestamp: {e}")))?;
        let day = day.as_primitive::<TimestampMicrosecondType>();
        out.days
            .extend((0..day.len()).map(|i| day.value(i) as f64 / 86_400e6));
        for (f, c) in b.schema().fields().iter().zip(b.columns()) {
            let name = f.name().as_str();
            match name {
                "share_observed" => share.extend(floats(c, name)?),
                "observed_km2" => observed.extend(floats(c, name)?),
                _ if name.ends_with("_km2") => {
                    let vals = floats(c, name)?;
                    match out.bars.iter_mut().find(|(n, _)| n == name) {
                        Some((_, all)) => all.extend(vals),
                        None => out.bars.push((name.to_string(), vals)),
                    }
                }
                _ => {}
            }
        }
    }
    out.coverage = if share.len() == out.days.len() && !share.is_empty() {
        Some(Coverage {
            label: "share of the area observed (%)",
            percent: true,
            values: share.iter().map(|v| v * 100.0).collect(),
        })
    } else if observed.len() == out.days.len() && !observed.is_empty() {
        Some(Coverage {
            label: "area observed (km²)",
            percent: false,
            values: observed,
        })
    } else {
        None
    };
    if out.bars.is_empty() {
        // a series of observed area alone is drawn as bars
        if let Some(c) = out.coverage.take().filter(|c| !c.percent) {
            out.bars.push(("observed_km2".into(), c.values));
        }
    }
    Ok(out)
}

/// An axis value as a label: no trailing ".0", at most 3 decimals.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The line chart: (rgb, width, height). Each day with data gets a bar per
/// area column, so days without an acquisition stay empty (no line joins
/// across them); the coverage of each day is a marker on the right axis.
pub(crate) fn chart(
    batches: &[RecordBatch],
    title: &str,
    subtitle: &str,
) -> Result<(Vec<u8>, usize, usize)> {
    let Lines {
        days,
        bars,
        coverage,
    } = lines(batches)?;
    let err = |e: String| out_err(Path::new("series chart"), e);
    if days.is_empty() || bars.is_empty() {
        return Err(err(
            "nothing to draw: the series needs rows and a '*_km2' column".into(),
        ));
    }
    let (w, h) = (900usize, 520usize);
    let mut buf = vec![255u8; w * h * 3];
    {
        let root = Lettering(BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)))
            .into_drawing_area();
        let d =
            |r: std::result::Result<(), DrawingAreaErrorKind<_>>| r.map_err(|e| err(e.to_string()));
        d(root.draw_text(title, &bold(20.0), (20, 8)))?;
        d(root.draw_text(subtitle, &font(13.0), (20, 36)))?;
        let area = root.margin(60, 8, 8, 8);
        // half a day of room either side, so the end bars are whole
        let lo = days.iter().copied().fold(f64::INFINITY, f64::min) - 0.75;
        let hi = days.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 0.75;
        let ymax = bars
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.12;
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .right_y_label_area_size(if coverage.is_some() { 64 } else { 8 })
            .build_cartesian_2d(lo..hi, 0.0..ymax)
            .map_err(|e| err(e.to_string()))?
            .set_secondary_coord(
                lo..hi,
                0.0..coverage.as_ref().map_or(1.0, |c| {
                    if c.percent {
                        105.0
                    } else {
                        c.values
                            .iter()
                            .copied()
                            .filter(|v| v.is_finite())
                            .fold(0.0, f64::max)
                            * 1.12
                    }
                }),
            );
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| day_label(x.round().max(0.0) as u32))
            .y_label_formatter(&|v| tick(*v))
            .y_desc("km² (ellipsoidal)")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(0, 0, 0).mix(0.12))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let palette = [
            RGBColor(20, 90, 200),
            RGBColor(200, 90, 20),
            RGBColor(30, 150, 60),
            RGBColor(150, 60, 160),
        ];
        let width = 0.7 / bars.len() as f64;
        for (i, (name, vals)) in bars.iter().enumerate() {
            let c = palette[i % palette.len()];
            let off = -0.35 + width * i as f64;
            chart
                .draw_series(days.iter().zip(vals).filter(|(_, v)| v.is_finite()).map(
                    |(&x, &v)| Rectangle::new([(x + off, 0.0), (x + off + width, v)], c.filled()),
                ))
                .map_err(|e| err(e.to_string()))?
                .label(name.replace('_', " ").replace("km2", "km²"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        if let Some(cov) = &coverage {
            let grey = RGBColor(90, 90, 90);
            chart
                .configure_secondary_axes()
                .y_desc(cov.label)
                .y_label_formatter(&|v| tick(*v))
                .label_style(font(12.0))
                .axis_desc_style(font(13.0))
                .draw()
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_secondary_series(
                    days.iter()
                        .zip(&cov.values)
                        .filter(|(_, v)| v.is_finite())
                        .map(|(&x, &v)| Cross::new((x, v), 4, grey.stroke_width(2))),
                )
                .map_err(|e| err(e.to_string()))?
                .label(cov.label)
                .legend(move |(x, y)| Cross::new((x + 7, y), 4, grey.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .label_font(font(13.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(e.to_string()))?;
        d(root.present())?;
    }
    Ok((buf, w, h))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn series() -> RecordBatch {
        let day = |d: i64| d * 86_400_000_000;
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new(
                    "day",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Field::new("flooded_km2", DataType::Float64, false),
                Field::new("observed_km2", DataType::Float64, false),
            ])),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![day(19236), day(19239), day(19245)])
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![10.0, 40.0, 20.0])),
                Arc::new(Float64Array::from(vec![900.0, 1000.0, 950.0])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn days_without_data_stay_empty() {
        // three days with data over ten: three separate bars, no line
        // joining them, and the share observed on its own axis
        let (rgb, w, h) = chart(&[series()], "t", "s").unwrap();
        let blue = |x: usize, y: usize| {
            let p = &rgb[(y * w + x) * 3..][..3];
            p == [20, 90, 200]
        };
        // the lowest row with bar colour: just above the x axis
        let row = (0..h).rev().find(|&y| (0..w).any(|x| blue(x, y))).unwrap();
        let mut runs = 0;
        for x in 1..w {
            if blue(x, row) && !blue(x - 1, row) {
                runs += 1;
            }
        }
        assert_eq!(runs, 3, "bars at the bottom row {row}");
        let (ls, _) = lines(&[series()])
            .unwrap()
            .bars
            .into_iter()
            .unzip::<_, _, Vec<_>, Vec<_>>();
        assert_eq!(ls, ["flooded_km2"]);
    }

    #[test]
    fn writes_all_three_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let outs = SeriesOutputs {
            csv: Some(dir.path().join("s.csv")),
            parquet: Some(dir.path().join("s.parquet")),
            png: Some(dir.path().join("s.png")),
        };
        write_series(&[series()], &outs, "t", "s", Default::default()).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
        assert!(
            csv.starts_with("day,flooded_km2,observed_km2\n2022-09-01T00:00:00"),
            "{csv}"
        );
        assert!(dir.path().join("s.png").metadata().unwrap().len() > 5000);
        // a series without km² columns cannot be drawn: nothing is left behind
        let other = tempfile::tempdir().unwrap();
        let outs = SeriesOutputs {
            csv: Some(other.path().join("s.csv")),
            parquet: None,
            png: Some(other.path().join("s.png")),
        };
        let b = series().project(&[0]).unwrap();
        assert!(write_series(&[b], &outs, "t", "s", Default::default()).is_err());
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    }
}
