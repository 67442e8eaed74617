//! A CQL2 filter on STAC items (`floodsql.filter`): parsed and checked once,
//! when set, then carried as a value — sent to an API as cql2-json,
//! evaluated here on static catalogues and on APIs without the filter
//! extension, shown in messages as cql2-text.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// A checked CQL2 filter (shared: cheap to clone with the search it is
/// part of).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemsFilter(std::sync::Arc<Parsed>);

/// Its expression, and the cql2-json and cql2-text it is written as
/// (computed once, both known to exist).
#[derive(Debug, PartialEq)]
struct Parsed {
    expr: cql2::Expr,
    json: Value,
    text: String,
}

fn bad(value: &str, message: String) -> Error {
    Error::InvalidArgument {
        what: "floodsql.filter",
        value: value.to_string(),
        message,
    }
}

impl ItemsFilter {
    /// Parses cql2-text or cql2-json; `None` for an empty filter.
    pub(crate) fn parse(text: &str) -> Result<Option<Self>> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let expr: cql2::Expr = t
            .parse()
            .map_err(|e| bad(t, format!("not CQL2 text or JSON: {e}")))?;
        Self::from_expr(expr, t).map(Some)
    }

    fn from_expr(expr: cql2::Expr, given: &str) -> Result<Self> {
        let json = expr
            .to_value()
            .map_err(|e| bad(given, format!("cannot be written as cql2-json: {e}")))?;
        let text = expr
            .to_text()
            .map_err(|e| bad(given, format!("cannot be written as cql2-text: {e}")))?;
        Ok(ItemsFilter(std::sync::Arc::new(Parsed {
            expr,
            json,
            text,
        })))
    }

    /// As cql2-json (what an API's filter extension is sent).
    pub(crate) fn json(&self) -> &Value {
        &self.0.json
    }

    /// As cql2-text, for messages.
    pub(crate) fn text(&self) -> &str {
        &self.0.text
    }

    /// Whether the item whose JSON is `item` passes; `id` names it in an
    /// error. A filter naming a property the item lacks does not match it
    /// (as an API answers), and is no error.
    pub(crate) fn matches(&self, id: &str, item: &Value) -> Result<bool> {
        let reduced = self
            .0
            .expr
            .clone()
            .reduce(Some(item))
            .map_err(|err| Error::BadItem {
                item: id.to_string(),
                message: format!("filter {}: {err}", self.0.text),
            })?;
        Ok(reduced.is_true())
    }
}

/// Carried (to cluster peers, in plans) as its cql2-json.
impl Serialize for ItemsFilter {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.json.serialize(s)
    }
}

/// Read back from cql2-json, and checked again.
impl<'de> Deserialize<'de> for ItemsFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let json = Value::deserialize(d)?;
        let expr: cql2::Expr =
            serde_json::from_value(json.clone()).map_err(serde::de::Error::custom)?;
        ItemsFilter::from_expr(expr, &json.to_string()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_parse_to_one_filter_and_round_trip() {
        let text = ItemsFilter::parse("flooded_pixels > 0 AND \"Equi7Tile\" = 'E051N015T3'")
            .unwrap()
            .unwrap();
        assert_eq!(text.json()["op"], "and", "{}", text.json());
        let json = ItemsFilter::parse(&text.json().to_string())
            .unwrap()
            .unwrap();
        assert_eq!(json, text);
        let carried: ItemsFilter =
            serde_json::from_str(&serde_json::to_string(&text).unwrap()).unwrap();
        assert_eq!(carried, text);
        assert!(text.text().contains("E051N015T3"), "{}", text.text());
        assert_eq!(ItemsFilter::parse("  ").unwrap(), None);
    }

    #[test]
    fn bad_filters_name_the_option() {
        for bad in ["flooded_pixels >", "{\"op\": ", "a = = 1"] {
            let e = ItemsFilter::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("floodsql.filter") && e.contains("CQL2") && e.contains(bad.trim()),
                "{bad}: {e}"
            );
        }
    }
}
