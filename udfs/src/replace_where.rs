//! `replace_where(pixels, mask, mask_value, new_value)`: combines two
//! assets of a chunk pixel by pixel — the pixels of `pixels` whose `mask`
//! pixel equals `mask_value` become `new_value`, the others stay. With GFM's
//! masks (`flood_chunks(…, 'ensemble_flood_extent,reference_water_mask,exclusion_mask')`):
//!
//! ```sql
//! -- flood apart from permanent water (→ 0, dry), excluded pixels unobserved (→ 255)
//! replace_where(replace_where(pixels, reference_water_mask, 1, 0), exclusion_mask, 1, 255)
//! ```
//!
//! Both buffers are uint8 over the same window (a length mismatch is an
//! execution error); NULL in either gives NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, LargeBinaryBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};

use crate::is_binary;
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ReplaceWhere {
    signature: Signature,
    doc: Documentation,
}

impl Default for ReplaceWhere {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            doc: Documentation::builder(
                DocSection {
                    include: true,
                    label: "floodsql pixel functions",
                    description: None,
                },
                "Pixel-wise combination of two assets of a chunk: the pixels whose mask pixel equals mask_value become new_value, the others keep their value.",
                "replace_where(pixels, mask, mask_value, new_value)",
            )
            .with_argument("pixels", "a uint8 pixel buffer (e.g. flood_chunks.pixels)")
            .with_argument("mask", "a uint8 pixel buffer of the same window (e.g. flood_chunks.reference_water_mask)")
            .with_argument("mask_value", "integer constant 0..=255")
            .with_argument("new_value", "integer constant 0..=255")
            .with_sql_example(
                "SELECT x_off, y_off, width, height, flood_max_extent(replace_where(replace_where(pixels, reference_water_mask, 1, 0), exclusion_mask, 1, 255)) AS pixels FROM flood_chunks(..., 'ensemble_flood_extent,reference_water_mask,exclusion_mask') GROUP BY x_off, y_off, width, height",
            )
            .build(),
        }
    }
}

fn byte_arg(args: &ScalarFunctionArgs, i: usize, what: &str) -> Result<u8> {
    match args.args.get(i) {
        Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))) if (0..=255).contains(v) => {
            Ok(*v as u8)
        }
        _ => exec_err!("replace_where: {what} must be a constant integer 0..=255"),
    }
}

impl ScalarUDFImpl for ReplaceWhere {
    fn name(&self) -> &str {
        "replace_where"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [p, m, a, b] if is_binary(p) && is_binary(m) && a.is_integer() && b.is_integer() => {
                Ok(vec![
                    DataType::LargeBinary,
                    DataType::LargeBinary,
                    DataType::Int64,
                    DataType::Int64,
                ])
            }
            _ => plan_err!(
                "replace_where takes (pixels: Binary, mask: Binary, mask_value: integer, new_value: integer), got {arg_types:?}"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::LargeBinary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (from, to) = (
            byte_arg(&args, 2, "mask_value")?,
            byte_arg(&args, 3, "new_value")?,
        );
        let n = args.number_rows;
        let px: ArrayRef = args.args[0].clone().into_array(n)?;
        let mk: ArrayRef = args.args[1].clone().into_array(n)?;
        let (px, mk) = (px.as_binary::<i64>(), mk.as_binary::<i64>());
        let mut out = LargeBinaryBuilder::with_capacity(n, px.value_data().len());
        let mut buf = Vec::new();
        for i in 0..n {
            if px.is_null(i) || mk.is_null(i) {
                out.append_null();
                continue;
            }
            let (p, m) = (px.value(i), mk.value(i));
            if p.len() != m.len() {
                return exec_err!(
                    "replace_where: pixels and mask differ in length ({} vs {} bytes): pass two assets of the same chunk",
                    p.len(),
                    m.len()
                );
            }
            buf.clear();
            buf.extend(
                p.iter()
                    .zip(m)
                    .map(|(&v, &k)| if k == from { to } else { v }),
            );
            out.append_value(&buf);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
