//! `pixel_count(pixels [, value])`: the number of pixels (bytes) in a uint8
//! buffer, or of those equal to `value`. With `flood_max_extent` it gives the
//! flooded area in SQL:
//! `SELECT sum(pixel_count(extent, 1)) * 400 / 1e6 AS km2 FROM (SELECT flood_max_extent(pixels) AS extent FROM … GROUP BY …)`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::pixel_agg::for_each_binary;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PixelCount {
    signature: Signature,
    doc: Documentation,
}

impl Default for PixelCount {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            doc: Documentation::builder(
                DocSection {
                    include: true,
                    label: "floodsql pixel functions",
                    description: None,
                },
                "The number of pixels (bytes) of a uint8 pixel buffer, or of those equal to value.",
                "pixel_count(pixels [, value])",
            )
            .with_argument("pixels", "a uint8 pixel buffer (Binary)")
            .with_argument("value", "integer constant 0..=255: count only pixels equal to it")
            .with_sql_example(
                "SELECT sum(pixel_count(extent, 1)) * 400 / 1e6 AS km2 FROM (SELECT flood_max_extent(pixels) AS extent FROM flood_chunks(...) GROUP BY chunk_row, chunk_col)",
            )
            .build(),
        }
    }
}

impl ScalarUDFImpl for PixelCount {
    fn name(&self) -> &str {
        "pixel_count"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [p] | [p, _]
                if matches!(
                    p,
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                ) =>
            {
                let mut v = vec![p.clone()];
                if let Some(t) = arg_types.get(1) {
                    if !t.is_integer() {
                        return plan_err!("pixel_count: value must be an integer, got {t}");
                    }
                    v.push(DataType::Int64);
                }
                Ok(v)
            }
            _ => plan_err!(
                "pixel_count takes (pixels: Binary [, value: integer]), got {arg_types:?}"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let value = match args.args.get(1) {
            None => None,
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))) if (0..=255).contains(v) => {
                Some(*v as u8)
            }
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(_)))) => {
                return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(0))))
            }
            Some(_) => return exec_err!("pixel_count: value must be a constant integer"),
        };
        let pixels: ArrayRef = args.args[0].clone().into_array(args.number_rows)?;
        let mut out: Vec<Option<i64>> = vec![None; pixels.len()];
        for_each_binary(&pixels, |row, px| {
            out[row] = Some(match value {
                None => px.len() as i64,
                Some(v) => px.iter().map(|&p| (p == v) as i64).sum(),
            });
            Ok(())
        })?;
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}
