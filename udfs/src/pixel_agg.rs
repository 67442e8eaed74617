//! The machinery shared by floodsql's per-pixel aggregations.
//!
//! Every flood UDAF folds a column of uint8 pixel buffers (one buffer per
//! (time slice, chunk) row, all rows of one group the same length) into one
//! per-pixel state. A [`PixelKernel`] says how: its `Cell` type, how one slice
//! updates the cells and how two partial states merge. [`PixelAggregate`] turns
//! a kernel into a DataFusion aggregate with both an [`Accumulator`] and a native
//! [`GroupsAccumulator`]; the state crossing partitions (and, under Ballista,
//! executors) is the cells as little-endian bytes in a `LargeBinary` column
//! (64-bit offsets: a partial aggregate emits the states of all its chunks in
//! one array, which may pass 2 GiB at continent scale), which is also the
//! function's output.

use std::any::Any;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, LargeBinaryBuilder};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, DocSection, Documentation, EmitTo, GroupsAccumulator, Signature,
    Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// GFM's nodata value, used when a query gives none.
pub const DEFAULT_NODATA: u8 = 255;

/// One pixel's state: how it crosses partitions (little-endian bytes) and how
/// two partial states merge.
pub trait Cell: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Bytes of one cell in the serialised state / output.
    const BYTES: usize;
    fn merge(cells: &mut [Self], other: &[Self]);
    fn write_bytes(cells: &[Self], out: &mut Vec<u8>);
    fn read_bytes(bytes: &[u8], out: &mut Vec<Self>);
}

/// 0/1 mask cells: merge is OR.
impl Cell for u8 {
    const BYTES: usize = 1;
    fn merge(cells: &mut [u8], other: &[u8]) {
        for (c, &o) in cells.iter_mut().zip(other) {
            *c |= o;
        }
    }
    fn write_bytes(cells: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(cells);
    }
    fn read_bytes(bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
    }
}

/// Counter cells: merge is a saturating add.
impl Cell for u16 {
    const BYTES: usize = 2;
    fn merge(cells: &mut [u16], other: &[u16]) {
        for (c, &o) in cells.iter_mut().zip(other) {
            *c = c.saturating_add(o);
        }
    }
    fn write_bytes(cells: &[u16], out: &mut Vec<u8>) {
        out.reserve(cells.len() * 2);
        for c in cells {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    fn read_bytes(bytes: &[u8], out: &mut Vec<u16>) {
        out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]])),
        );
    }
}

/// A per-pixel fold over uint8 slices. Kernels work on whole buffers with no
/// per-pixel branches so that the compiler vectorises them.
pub trait PixelKernel: Debug + Default + Send + Sync + 'static {
    /// One pixel's state.
    type Cell: Cell;
    /// SQL name of the function.
    const NAME: &'static str;
    /// What it computes per pixel, one sentence (its `documentation()`).
    const DESCRIPTION: &'static str;
    /// Output cell type as SQL users see it ("uint8 0/1", "uint16 count").
    const OUTPUT: &'static str;
    /// Fold one time slice's pixels into the cells (`cells.len() == pixels.len()`).
    fn update(cells: &mut [Self::Cell], pixels: &[u8], nodata: u8);
}

/// A DataFusion aggregate built from a [`PixelKernel`]:
/// `NAME(pixels [, nodata])` over Binary / LargeBinary / BinaryView pixels.
#[derive(Debug)]
pub struct PixelAggregate<K: PixelKernel> {
    signature: Signature,
    doc: Documentation,
    _kernel: PhantomData<K>,
}

impl<K: PixelKernel> Default for PixelAggregate<K> {
    fn default() -> Self {
        let doc = Documentation::builder(
            DocSection {
                include: true,
                label: "floodsql pixel aggregates",
                description: Some("Per-pixel folds of the time slices of a chunk"),
            },
            format!("{} Output: LargeBinary, one {} per pixel, row-major over the chunk.", K::DESCRIPTION, K::OUTPUT),
            format!("{}(pixels [, nodata])", K::NAME),
        )
        .with_argument("pixels", "a time slice's fused uint8 pixels (flood_chunks.pixels)")
        .with_argument("nodata", "integer constant, default 255: pixels with this value are not observed")
        .with_sql_example(format!(
            "SELECT chunk_row, chunk_col, {}(pixels) FROM flood_chunks(...) GROUP BY chunk_row, chunk_col",
            K::NAME
        ))
        .build();
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            doc,
            _kernel: PhantomData,
        }
    }
}

impl<K: PixelKernel> PartialEq for PixelAggregate<K> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}
impl<K: PixelKernel> Eq for PixelAggregate<K> {}
impl<K: PixelKernel> Hash for PixelAggregate<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        K::NAME.hash(state)
    }
}

/// Reads the optional constant `nodata` argument (an integer literal 0..=255).
fn nodata_arg(name: &str, args: &AccumulatorArgs) -> Result<u8> {
    let Some(expr) = args.exprs.get(1) else {
        return Ok(DEFAULT_NODATA);
    };
    let any: &dyn Any = expr.as_ref();
    let Some(lit) = any.downcast_ref::<Literal>() else {
        return plan_err!("{name}: nodata (2nd argument) must be a constant integer 0..=255");
    };
    let v = match lit.value() {
        ScalarValue::Int8(Some(v)) => *v as i64,
        ScalarValue::Int16(Some(v)) => *v as i64,
        ScalarValue::Int32(Some(v)) => *v as i64,
        ScalarValue::Int64(Some(v)) => *v,
        ScalarValue::UInt8(Some(v)) => *v as i64,
        ScalarValue::UInt16(Some(v)) => *v as i64,
        ScalarValue::UInt32(Some(v)) => *v as i64,
        ScalarValue::UInt64(Some(v)) => *v as i64,
        other => return plan_err!("{name}: nodata must be an integer 0..=255, got {other}"),
    };
    if !(0..=255).contains(&v) {
        return plan_err!("{name}: nodata must be in 0..=255, got {v}");
    }
    Ok(v as u8)
}

/// Calls `f(row, bytes)` for each non-null row of a binary-like array.
pub fn for_each_binary(
    array: &ArrayRef,
    mut f: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    match array.data_type() {
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    f(i, a.value(i))?;
                }
            }
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    f(i, a.value(i))?;
                }
            }
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    f(i, a.value(i))?;
                }
            }
        }
        other => return exec_err!("expected a binary pixel column, got {other}"),
    }
    Ok(())
}

impl<K: PixelKernel> AggregateUDFImpl for PixelAggregate<K> {
    fn name(&self) -> &str {
        K::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = K::NAME;
        if arg_types.is_empty() || arg_types.len() > 2 {
            return plan_err!(
                "{name} takes (pixels [, nodata]), got {} arguments",
                arg_types.len()
            );
        }
        let pixels = match &arg_types[0] {
            t @ (DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => t.clone(),
            DataType::Null => DataType::Binary,
            other => return plan_err!("{name}: pixels must be Binary, got {other}"),
        };
        let mut out = vec![pixels];
        if let Some(t) = arg_types.get(1) {
            if !t.is_integer() {
                return plan_err!("{name}: nodata must be an integer, got {t}");
            }
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::LargeBinary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[cells]", args.name),
            DataType::LargeBinary,
            true,
        ))])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let nodata = nodata_arg(K::NAME, &acc_args)?;
        Ok(Box::new(PixelAccumulator::<K> {
            nodata,
            cells: None,
            scratch: Vec::new(),
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let nodata = nodata_arg(K::NAME, &args)?;
        Ok(Box::new(PixelGroupsAccumulator::<K> {
            nodata,
            groups: Vec::new(),
            scratch: Vec::new(),
        }))
    }
}

fn check_len(name: &str, have: usize, got: usize) -> Result<()> {
    if have != got {
        return exec_err!(
            "{name}: pixel buffers of one group differ in length ({have} vs {got} pixels); \
             group by the chunk so that every row of a group covers the same window"
        );
    }
    Ok(())
}

/// Folds one slice into an optional state, creating it on first use.
fn fold_slice<K: PixelKernel>(
    cells: &mut Option<Vec<K::Cell>>,
    pixels: &[u8],
    nodata: u8,
) -> Result<()> {
    let c = cells.get_or_insert_with(|| vec![K::Cell::default(); pixels.len()]);
    check_len(K::NAME, c.len(), pixels.len())?;
    K::update(c, pixels, nodata);
    Ok(())
}

/// Merges serialised state bytes into an optional state.
fn fold_state<K: PixelKernel>(
    cells: &mut Option<Vec<K::Cell>>,
    bytes: &[u8],
    scratch: &mut Vec<K::Cell>,
) -> Result<()> {
    if !bytes.len().is_multiple_of(<K::Cell as Cell>::BYTES) {
        return exec_err!("{}: corrupt state of {} bytes", K::NAME, bytes.len());
    }
    match cells {
        None => {
            let mut c = Vec::with_capacity(bytes.len() / <K::Cell as Cell>::BYTES);
            <K::Cell as Cell>::read_bytes(bytes, &mut c);
            *cells = Some(c);
        }
        Some(c) => {
            scratch.clear();
            <K::Cell as Cell>::read_bytes(bytes, scratch);
            check_len(K::NAME, c.len(), scratch.len())?;
            <K::Cell as Cell>::merge(c, scratch);
        }
    }
    Ok(())
}

fn cells_to_array<K: PixelKernel>(groups: Vec<Option<Vec<K::Cell>>>) -> ArrayRef {
    let bytes: usize = groups
        .iter()
        .flatten()
        .map(|c| c.len() * <K::Cell as Cell>::BYTES)
        .sum();
    let mut b = LargeBinaryBuilder::with_capacity(groups.len(), bytes);
    let mut buf = Vec::new();
    for g in groups {
        match g {
            Some(c) => {
                buf.clear();
                <K::Cell as Cell>::write_bytes(&c, &mut buf);
                b.append_value(&buf);
            }
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// Single-group accumulator.
#[derive(Debug)]
pub struct PixelAccumulator<K: PixelKernel> {
    nodata: u8,
    cells: Option<Vec<K::Cell>>,
    scratch: Vec<K::Cell>,
}

impl<K: PixelKernel> Accumulator for PixelAccumulator<K> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let nodata = self.nodata;
        for_each_binary(&values[0], |_, px| {
            fold_slice::<K>(&mut self.cells, px, nodata)
        })
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (cells, scratch) = (&mut self.cells, &mut self.scratch);
        for_each_binary(&states[0], |_, b| fold_state::<K>(cells, b, scratch))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::LargeBinary(self.cells.as_ref().map(|c| {
            let mut buf = Vec::with_capacity(c.len() * <K::Cell as Cell>::BYTES);
            <K::Cell as Cell>::write_bytes(c, &mut buf);
            buf
        })))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .cells
                .as_ref()
                .map_or(0, |c| c.capacity() * std::mem::size_of::<K::Cell>())
            + self.scratch.capacity() * std::mem::size_of::<K::Cell>()
    }
}

/// Native groups accumulator: one state per group (= per output chunk).
#[derive(Debug)]
pub struct PixelGroupsAccumulator<K: PixelKernel> {
    nodata: u8,
    groups: Vec<Option<Vec<K::Cell>>>,
    scratch: Vec<K::Cell>,
}

impl<K: PixelKernel> GroupsAccumulator for PixelGroupsAccumulator<K> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, || None);
        let nodata = self.nodata;
        let groups = &mut self.groups;
        for_each_binary(&values[0], |row, px| {
            if let Some(f) = opt_filter {
                if !f.is_valid(row) || !f.value(row) {
                    return Ok(());
                }
            }
            fold_slice::<K>(&mut groups[group_indices[row]], px, nodata)
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(cells_to_array::<K>(emit_to.take_needed(&mut self.groups)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, || None);
        let (groups, scratch) = (&mut self.groups, &mut self.scratch);
        for_each_binary(&values[0], |row, b| {
            fold_state::<K>(&mut groups[group_indices[row]], b, scratch)
        })
    }

    /// Each input row as its own state (used when DataFusion skips partial
    /// aggregation).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let mut states: Vec<Option<Vec<K::Cell>>> = vec![None; values[0].len()];
        let nodata = self.nodata;
        for_each_binary(&values[0], |row, px| {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                return Ok(());
            }
            fold_slice::<K>(&mut states[row], px, nodata)
        })?;
        Ok(vec![cells_to_array::<K>(states)])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Option<Vec<K::Cell>>>()
            + self
                .groups
                .iter()
                .flatten()
                .map(|c| c.capacity() * std::mem::size_of::<K::Cell>())
                .sum::<usize>()
            + self.scratch.capacity() * std::mem::size_of::<K::Cell>()
    }
}
