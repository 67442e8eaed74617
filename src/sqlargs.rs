//! Reading table-function arguments (constant literals) with clear errors.

use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::Expr;

/// A string argument; NULL or '' means "not given".
pub(crate) fn opt_str(fun: &str, name: &str, args: &[Expr], i: usize) -> Result<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(v, _)) => match v {
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                Ok(s.clone().filter(|s| !s.trim().is_empty()))
            }
            ScalarValue::Null => Ok(None),
            other => plan_err!(
                "{fun}: argument {} ({name}) must be a string, got {other}",
                i + 1
            ),
        },
        Some(e) => plan_err!(
            "{fun}: argument {} ({name}) must be a constant, got {e}",
            i + 1
        ),
    }
}

/// A required string argument.
pub(crate) fn req_str(fun: &str, name: &str, args: &[Expr], i: usize) -> Result<String> {
    match opt_str(fun, name, args, i)? {
        Some(s) => Ok(s),
        None => plan_err!("{fun}: argument {} ({name}) is required", i + 1),
    }
}

/// An optional non-negative integer argument.
pub(crate) fn opt_usize(fun: &str, name: &str, args: &[Expr], i: usize) -> Result<Option<usize>> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(ScalarValue::Null, _)) => Ok(None),
        Some(Expr::Literal(v, _)) => match v.cast_to(&arrow::datatypes::DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) if n >= 0 => Ok(Some(n as usize)),
            _ => plan_err!(
                "{fun}: argument {} ({name}) must be a non-negative integer, got {v}",
                i + 1
            ),
        },
        Some(e) => plan_err!(
            "{fun}: argument {} ({name}) must be a constant, got {e}",
            i + 1
        ),
    }
}

/// Fails when more than `max` arguments were given.
pub(crate) fn check_arity(fun: &str, signature: &str, args: &[Expr], max: usize) -> Result<()> {
    if args.len() > max {
        return plan_err!(
            "{fun} takes at most {max} arguments: {fun}({signature}), got {}",
            args.len()
        );
    }
    Ok(())
}
