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
use crate::output::png::{bold, day_label, font, write_rgb};
use crate::output::transaction::OutputTransaction;

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
    /// directory is missing or two outputs are one file.
    pub(crate) fn transaction(&self, cancel: Cancel) -> Result<OutputTransaction> {
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

/// The series' days (days since 1970-01-01, fractional) and every `*_km2`
/// column: (name, values).
type Lines = (Vec<f64>, Vec<(String, Vec<f64>)>);

fn lines(batches: &[RecordBatch]) -> Result<Lines> {
    let bad = |m: String| out_err(Path::new("series chart"), m);
    let mut days = Vec::new();
    let mut cols: Vec<(String, Vec<f64>)> = Vec::new();
    for b in batches {
        let s = b.schema();
        let day = b
            .column_by_name("day")
            .ok_or_else(|| bad("the series has no 'day' column".into()))?;
        let day = arrow::compute::cast(day, &DataType::Timestamp(TimeUnit::Microsecond, None))
            .map_err(|e| bad(format!("column 'day' is not a timestamp: {e}")))?;
        let day = day.as_primitive::<TimestampMicrosecondType>();
        days.extend((0..day.len()).map(|i| day.value(i) as f64 / 86_400e6));
        for (f, c) in s.fields().iter().zip(b.columns()) {
            if !f.name().ends_with("_km2") {
                continue;
            }
            let v = arrow::compute::cast(c, &DataType::Float64)
                .map_err(|e| bad(format!("column '{}' is not numeric: {e}", f.name())))?;
            let v = v.as_primitive::<Float64Type>();
            let vals = (0..v.len()).map(|i| if v.is_valid(i) { v.value(i) } else { f64::NAN });
            match cols.iter_mut().find(|(n, _)| n == f.name()) {
                Some((_, all)) => all.extend(vals),
                None => cols.push((f.name().clone(), vals.collect())),
            }
        }
    }
    Ok((days, cols))
}

/// The line chart: (rgb, width, height).
pub(crate) fn chart(
    batches: &[RecordBatch],
    title: &str,
    subtitle: &str,
) -> Result<(Vec<u8>, usize, usize)> {
    let (days, cols) = lines(batches)?;
    let err = |e: String| out_err(Path::new("series chart"), e);
    if days.is_empty() || cols.is_empty() {
        return Err(err(
            "nothing to draw: the series needs rows and a '*_km2' column".into(),
        ));
    }
    let (w, h) = (900usize, 520usize);
    let mut buf = vec![255u8; w * h * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
        let d =
            |r: std::result::Result<(), DrawingAreaErrorKind<_>>| r.map_err(|e| err(e.to_string()));
        d(root.draw_text(title, &bold(20.0), (20, 10)))?;
        d(root.draw_text(subtitle, &font(13.0), (20, 38)))?;
        let area = root.margin(64, 16, 16, 24);
        let (x0, x1) = (
            days.iter().copied().fold(f64::INFINITY, f64::min),
            days.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        let (x0, x1) = if x1 > x0 {
            (x0, x1)
        } else {
            (x0 - 1.0, x0 + 1.0)
        };
        let ymax = cols
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.08;
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, 0.0..ymax)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| day_label(x.round().max(0.0) as u32))
            .y_desc("km² (ellipsoidal)")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        let palette = [
            RGBColor(20, 90, 200),
            RGBColor(120, 120, 120),
            RGBColor(200, 90, 20),
            RGBColor(30, 150, 60),
        ];
        for (i, (name, vals)) in cols.iter().enumerate() {
            let c = palette[i % palette.len()];
            let pts: Vec<(f64, f64)> = days
                .iter()
                .copied()
                .zip(vals.iter().copied())
                .filter(|(_, v)| v.is_finite())
                .collect();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    pts.clone(),
                    c.stroke_width(2),
                )))
                .map_err(|e| err(e.to_string()))?
                .label(name.replace('_', " "))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .label_font(font(13.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
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
