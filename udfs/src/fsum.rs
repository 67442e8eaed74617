//! `fsum(x)`: the sum of float64 values, correctly rounded (as Python's
//! `math.fsum`), so the same whatever the order the rows arrive in.
//!
//! A plain `sum` over float64 depends on the order of its additions: a query
//! run on 4 partitions, or on a Ballista cluster, can differ from the same
//! query run on one in the last digit. `fsum` keeps the exact sum as a list
//! of non-overlapping partials (Shewchuk's algorithm, the one behind
//! `math.fsum`) and rounds once at the end, so local and distributed runs give
//! the same bits. floodsql's SQL sums areas (km²) with it.
//!
//! NULLs are skipped; no non-NULL value gives NULL (as `sum`). NaN or
//! infinities give NaN or the infinity, as `math.fsum`; an exact sum beyond
//! float64's range is an error (Python raises `OverflowError`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, DocSection, Documentation, Signature, Volatility,
};

/// The exact sum of float64 values, rounded once when asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSum {
    /// Non-overlapping, in increasing magnitude; their exact sum is the sum.
    partials: Vec<f64>,
    /// The sum of the non-finite values (0 if none).
    special: f64,
    /// An intermediate sum overflowed.
    overflow: bool,
}

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x` exactly.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            self.special += x;
            return;
        }
        let mut x = x;
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        if !x.is_finite() {
            self.overflow = true;
            return;
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    /// Adds every value another sum holds.
    pub fn merge(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
        self.special += other.special;
        self.overflow |= other.overflow;
    }

    /// The sum, correctly rounded to float64 (round half to even).
    pub fn value(&self) -> std::result::Result<f64, Overflow> {
        if self.special != 0.0 || self.special.is_nan() {
            return Ok(self.special);
        }
        if self.overflow {
            return Err(Overflow);
        }
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else {
            return Ok(0.0);
        };
        // the largest partials first, until one addition is inexact
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // `hi + lo` was a tie, rounded to even: the partials below decide
        // whether the exact sum lies above or below the tie.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        Ok(hi)
    }
}

/// An exact sum beyond float64's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sum is beyond float64's range")
    }
}

impl std::error::Error for Overflow {}

/// The `fsum` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Fsum {
    signature: Signature,
    doc: Documentation,
}

impl Default for Fsum {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            doc: Documentation::builder(
                DocSection {
                    include: true,
                    label: "floodsql pixel functions",
                    description: None,
                },
                "The sum of float64 values, correctly rounded (as Python's math.fsum): the same bits whatever the order of the rows, so on one partition, many, or a cluster. NULLs are skipped; no value gives NULL.",
                "fsum(x)",
            )
            .with_argument("x", "a float64 expression (other numbers are cast)")
            .with_sql_example("SELECT region_id, fsum(z['flooded_km2']) FROM parts GROUP BY region_id")
            .build(),
        }
    }
}

fn partials_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false))),
        false,
    )
}

impl AggregateUDFImpl for Fsum {
    fn name(&self) -> &str {
        "fsum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if t.is_numeric() || t.is_null() => Ok(vec![DataType::Float64]),
            [t] => plan_err!("fsum takes a number, got {t}"),
            _ => plan_err!("fsum takes one argument, got {}", arg_types.len()),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(partials_field(&format!("{}[partials]", args.name))),
            Arc::new(Field::new(
                format!("{}[special]", args.name),
                DataType::Float64,
                false,
            )),
            Arc::new(Field::new(
                format!("{}[overflow]", args.name),
                DataType::Boolean,
                false,
            )),
            Arc::new(Field::new(
                format!("{}[seen]", args.name),
                DataType::Boolean,
                false,
            )),
        ])
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<FsumAccumulator>::default())
    }
}

#[derive(Debug, Default)]
struct FsumAccumulator {
    sum: ExactSum,
    /// A non-NULL value was seen.
    seen: bool,
}

impl Accumulator for FsumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let v = values[0].as_primitive::<Float64Type>();
        for x in v.iter().flatten() {
            self.sum.add(x);
            self.seen = true;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [partials, special, overflow, seen] = states else {
            return exec_err!("fsum: a state has 4 columns, got {}", states.len());
        };
        let partials = partials.as_list::<i32>();
        let special = special.as_primitive::<Float64Type>();
        let overflow = overflow.as_boolean();
        let seen = seen.as_boolean();
        for i in 0..partials.len() {
            if partials.is_null(i) {
                continue;
            }
            let other = ExactSum {
                partials: partials
                    .value(i)
                    .as_primitive::<Float64Type>()
                    .values()
                    .to_vec(),
                special: special.value(i),
                overflow: overflow.value(i),
            };
            self.sum.merge(&other);
            self.seen |= seen.value(i);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = Float64Array::from(self.sum.partials.clone());
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Float64, false)),
            OffsetBuffer::from_lengths([values.len()]),
            Arc::new(values),
            None,
        );
        Ok(vec![
            ScalarValue::List(Arc::new(list)),
            ScalarValue::Float64(Some(self.sum.special)),
            ScalarValue::Boolean(Some(self.sum.overflow)),
            ScalarValue::Boolean(Some(self.seen)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if !self.seen {
            return Ok(ScalarValue::Float64(None));
        }
        match self.sum.value() {
            Ok(v) => Ok(ScalarValue::Float64(Some(v))),
            Err(e) => exec_err!("fsum: {e}"),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.partials.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(xs: &[f64]) -> f64 {
        let mut s = ExactSum::new();
        xs.iter().for_each(|&x| s.add(x));
        s.value().unwrap()
    }

    /// A deterministic pseudo-random sequence (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let m = (s >> 11) as f64 / (1u64 << 53) as f64;
                let e = ((s & 0x3f) as i32) - 20;
                m * 2f64.powi(e) * if s & 0x40 != 0 { -1.0 } else { 1.0 }
            })
            .collect()
    }

    #[test]
    fn known_sums_python_gives() {
        // CPython's test_math.testFsum cases, with the values math.fsum gives
        // exact powers of two, subnormals included
        let p2 = |e: i32| {
            if e >= -1022 {
                f64::from_bits(((e + 1023) as u64) << 52)
            } else {
                f64::from_bits(1u64 << (e + 1074))
            }
        };
        let cases: Vec<(Vec<f64>, f64)> = vec![
            (vec![], 0.0),
            (vec![0.0], 0.0),
            (vec![1e100, 1.0, -1e100, 1e-100, 1e50, -1.0, -1e50], 1e-100),
            (vec![p2(53), -0.5, -p2(-54)], p2(53) - 1.0),
            (vec![p2(53), 1.0, p2(-100)], p2(53) + 2.0),
            (vec![p2(53) + 10.0, 1.0, p2(-100)], p2(53) + 12.0),
            (vec![p2(53) - 4.0, 0.5, p2(-54)], p2(53) - 3.0),
            (
                (1..=1000).map(|n| 1.0 / n as f64).collect(),
                f64::from_bits(0x401df11f45f4e61a),
            ),
            (
                (1..=1000).map(|n| (-1f64).powi(n) / n as f64).collect(),
                -f64::from_bits(0x3fe62a2af1bd3624),
            ),
            (vec![1e16, 1.0, 1e-16], 10000000000000002.0),
            (vec![1e-16, 1.0, 1e16], 10000000000000002.0),
            (
                vec![1e16 - 2.0, 1.0 - p2(-53), -(1e16 - 2.0), -(1.0 - p2(-53))],
                0.0,
            ),
            (vec![0.1; 10], 1.0),
            (
                (-1074..972)
                    .step_by(2)
                    .map(|n| p2(n) - p2(n + 50) + p2(n + 52))
                    .chain([-p2(1022)])
                    .collect(),
                f64::from_bits(0x7c95555555555555),
            ),
        ];
        for (xs, want) in cases {
            assert_eq!(exact(&xs).to_bits(), want.to_bits(), "{xs:?}");
        }
        assert_eq!(exact(&[f64::INFINITY, 1.0]), f64::INFINITY);
        assert!(exact(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        // Python: OverflowError("intermediate overflow in fsum")
        let mut s = ExactSum::new();
        [1e308, 1e308, -1e308].iter().for_each(|&x| s.add(x));
        assert_eq!(s.value(), Err(Overflow));
    }

    #[test]
    fn the_same_bits_in_any_order_and_split() {
        let xs = noise(5000, 0x9e3779b97f4a7c15);
        let forward = exact(&xs);
        let mut rev = xs.clone();
        rev.reverse();
        assert_eq!(forward.to_bits(), exact(&rev).to_bits());
        // a plain sum does depend on the order here (the test would be
        // vacuous otherwise)
        let plain: f64 = xs.iter().sum();
        let plain_rev: f64 = rev.iter().sum();
        assert_ne!(plain.to_bits(), plain_rev.to_bits());
        // split into parts summed apart and merged, as partitions are
        for parts in [2, 3, 7, 64] {
            let mut total = ExactSum::new();
            for chunk in xs.chunks(xs.len().div_ceil(parts)).rev() {
                let mut s = ExactSum::new();
                chunk.iter().for_each(|&x| s.add(x));
                total.merge(&s);
            }
            assert_eq!(total.value().unwrap().to_bits(), forward.to_bits());
        }
    }

    #[test]
    fn agrees_with_exact_integer_arithmetic() {
        // multiples of 2^-30 below 2^20 are exact in i128 units of 2^-30
        let xs: Vec<f64> = noise(2000, 7)
            .into_iter()
            .map(|x| (x * 2f64.powi(30)).round() / 2f64.powi(30))
            .filter(|x| x.abs() < 2f64.powi(20))
            .collect();
        let units: i128 = xs.iter().map(|x| (x * 2f64.powi(30)) as i128).sum();
        // i128 → f64 rounds to nearest even, as the exact sum should
        let want = units as f64 / 2f64.powi(30);
        assert_eq!(exact(&xs), want);
    }

    #[test]
    fn state_round_trips_through_merge() {
        let xs = noise(300, 3);
        let mut a = FsumAccumulator::default();
        a.update_batch(&[Arc::new(Float64Array::from(xs[..100].to_vec()))])
            .unwrap();
        let mut b = FsumAccumulator::default();
        b.update_batch(&[Arc::new(Float64Array::from(xs[100..].to_vec()))])
            .unwrap();
        let state: Vec<ArrayRef> = b
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        a.merge_batch(&state).unwrap();
        assert_eq!(
            a.evaluate().unwrap(),
            ScalarValue::Float64(Some(exact(&xs)))
        );
        let mut empty = FsumAccumulator::default();
        assert_eq!(empty.evaluate().unwrap(), ScalarValue::Float64(None));
    }
}
