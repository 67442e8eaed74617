//! `item_property(json, name)`: one field of a JSON object column — the
//! `properties` (or `assets`) of `stac_items(...)` — as text, so that SQL can
//! filter and show what a CQL2 filter sees (`flooded_pixels`, `Equi7Tile`,
//! `created`, …): `CAST(item_property(properties, 'flooded_pixels') AS
//! BIGINT) > 0`.
//!
//! Why not `datafusion-functions-json`: its JSON parser (`jiter`) carries an
//! optional pyo3 0.29 whose `links = "python"` conflicts with the Python
//! package's pyo3 in one workspace; one field of a small object per item is
//! a few lines over `serde_json`, which floodsql already uses.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::DocSection;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use serde_json::Value;

/// The SQL name.
pub(crate) const NAME: &str = "item_property";

/// `item_property(json, name)` as a UDF.
pub(crate) fn item_property_udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ItemProperty {
        signature: Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ItemProperty {
    signature: Signature,
}

/// The field `name` of the JSON object `text` as text: a string as it is,
/// a number or boolean as JSON writes it, an array or object as JSON;
/// `None` when absent or null. `Err` when `text` is not a JSON object.
fn field(text: &str, name: &str) -> std::result::Result<Option<String>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    Ok(match o.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    })
}

impl ScalarUDFImpl for ItemProperty {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [json, name] = args.args.as_slice() else {
            return exec_err!("{NAME}(json, name) takes two arguments");
        };
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) = name else {
            return exec_err!("{NAME}: the name must be a text constant, e.g. 'flooded_pixels'");
        };
        let rows = json.to_array(args.number_rows)?;
        let Some(texts) = rows.as_any().downcast_ref::<StringArray>() else {
            return exec_err!("{NAME}: the first argument must be text (JSON)");
        };
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            out.push(match t {
                None => None,
                Some(t) => match field(t, name) {
                    Ok(v) => v,
                    Err(e) => return exec_err!("{NAME}: row {}: {e}", i + 1),
                },
            });
        }
        let array: ArrayRef = Arc::new(StringArray::from(out));
        Ok(ColumnarValue::Array(array))
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DocSection {
                    include: true,
                    label: "STAC",
                    description: None,
                },
                "One field of a JSON object as text: what a CQL2 filter sees of an item \
                 (stac_items' properties or assets). Strings as they are, numbers and booleans \
                 as JSON writes them; NULL when absent. CAST it to compare numbers.",
                "item_property(properties, name)",
            )
            .with_argument(
                "properties",
                "a JSON object as text (stac_items' `properties`)",
            )
            .with_argument("name", "the field, e.g. 'flooded_pixels' or 'Equi7Tile'")
            .with_sql_example(
                "SELECT id, item_property(properties, 'Equi7Tile') AS tile\n\
                 FROM stac_items('floodsql-demo/catalog/items.json', 'GFM', \
                 '68.0127,26.7242,68.4127,27.0642', '2022-09')\n\
                 WHERE CAST(item_property(properties, 'flooded_pixels') AS BIGINT) > 0;",
            )
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_as_text() {
        let j = r#"{"n": 12, "s": "E051N015T3", "b": true, "z": null, "a": [1, 2]}"#;
        assert_eq!(field(j, "n").unwrap().as_deref(), Some("12"));
        assert_eq!(field(j, "s").unwrap().as_deref(), Some("E051N015T3"));
        assert_eq!(field(j, "b").unwrap().as_deref(), Some("true"));
        assert_eq!(field(j, "a").unwrap().as_deref(), Some("[1,2]"));
        assert_eq!(field(j, "z").unwrap(), None);
        assert_eq!(field(j, "missing").unwrap(), None);
        assert!(field("[1]", "n").is_err() && field("{", "n").is_err());
    }
}
