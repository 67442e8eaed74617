//! `${name}` parameters in the canonical SQL files (`sql/*.sql`), bound to
//! quoted SQL literals. `floodsql extent --print-sql` shows the bound text.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// A parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A string: bound as a quoted SQL literal.
    Str(String),
    /// An integer: bound as it is.
    Int(i64),
    /// A float: bound as a numeric literal (finite values only).
    Float(f64),
    /// SQL NULL.
    Null,
}

impl Param {
    /// The value as a user wrote it (`NULL` for NULL).
    pub(crate) fn text(&self) -> String {
        match self {
            Param::Str(s) => s.clone(),
            Param::Int(i) => i.to_string(),
            Param::Float(f) => format!("{f:?}"),
            Param::Null => "NULL".into(),
        }
    }

    /// `(name, value)` pairs of bound parameters, as lineage records them.
    pub(crate) fn pairs(
        params: &std::collections::BTreeMap<String, Param>,
    ) -> Vec<(String, String)> {
        params.iter().map(|(k, v)| (k.clone(), v.text())).collect()
    }

    /// `--param k=v` values: integers stay integers, `NULL` is NULL.
    pub(crate) fn parse(v: &str) -> Param {
        if v.eq_ignore_ascii_case("null") {
            Param::Null
        } else if let Ok(i) = v.parse::<i64>() {
            Param::Int(i)
        } else {
            Param::Str(v.to_string())
        }
    }

    fn sql(&self) -> String {
        match self {
            Param::Str(s) => format!("'{}'", s.replace('\'', "''")),
            Param::Int(i) => i.to_string(),
            Param::Float(f) => format!("{f:?}"),
            Param::Null => "NULL".into(),
        }
    }
}

/// Replaces every `${name}`; an unbound name is an error naming it, and so
/// is a parameter the text never uses (a misspelt `--param`).
pub(crate) fn bind(sql: &str, params: &BTreeMap<String, Param>) -> Result<String> {
    // a misspelt --param is named as such (not as the ${name} it left unbound)
    let named = names(sql);
    for given in params.keys().filter(|k| !named.contains(k.as_str())) {
        let near = named
            .iter()
            .filter(|n| !params.contains_key(**n))
            .map(|n| (crate::error::edit_distance(n, given), *n))
            .min()
            .filter(|(d, _)| *d <= 2 || (*d <= 3 && given.len() > 6));
        if let Some((_, n)) = near {
            return Err(Error::Sql(format!(
                "--param {given} is not a parameter of the SQL: did you mean {n}? (the SQL has ${{{n}}})"
            )));
        }
    }
    let (out, used) = bind_some(sql, params)?;
    if let Some(unused) = params.keys().find(|k| !used.contains(k.as_str())) {
        return Err(Error::Sql(format!(
            "--param {unused} is given but the SQL has no ${{{unused}}} (its parameters: {})",
            if used.is_empty() {
                "none".to_string()
            } else {
                used.iter()
                    .map(|u| format!("${{{u}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    Ok(out)
}

/// The `${name}`s of `sql`.
fn names(sql: &str) -> std::collections::BTreeSet<&str> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = sql;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else { break };
        out.insert(&after[..j]);
        rest = &after[j + 1..];
    }
    out
}

/// [`bind`] without the unused-parameter check (the prompt binds each
/// statement with every `--param`); returns the names used.
pub(crate) fn bind_some(
    sql: &str,
    params: &BTreeMap<String, Param>,
) -> Result<(String, std::collections::BTreeSet<String>)> {
    let mut used = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find('}')
            .ok_or_else(|| Error::Sql("text has an unterminated '${'".into()))?;
        let name = &after[..j];
        let v = params.get(name).ok_or_else(|| {
            Error::Sql(format!(
                "parameter ${{{name}}} is not bound (give it with --param {name}=VALUE)"
            ))
        })?;
        out.push_str(&v.sql());
        used.insert(name.to_string());
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_quotes() {
        let mut p = BTreeMap::new();
        p.insert("a".to_string(), Param::Str("it's".into()));
        p.insert("n".to_string(), Param::Int(5));
        assert_eq!(bind("f(${a}, ${n})", &p).unwrap(), "f('it''s', 5)");
        assert!(bind("f(${b})", &p)
            .unwrap_err()
            .to_string()
            .contains("${b}"));
        let e = bind("f(${a})", &p).unwrap_err().to_string();
        assert!(
            e.contains("--param n is given") && e.contains("${a}"),
            "{e}"
        );
        assert_eq!(bind_some("f(${a})", &p).unwrap().0, "f('it''s')");
        // a misspelt --param: named, with the parameter it was meant for
        let mut q = BTreeMap::new();
        q.insert("sourc".to_string(), Param::Str("x".into()));
        let e = bind("f(${source}, ${bbox})", &q).unwrap_err().to_string();
        assert!(
            e.contains("--param sourc is not a parameter") && e.contains("did you mean source?"),
            "{e}"
        );
    }
}
