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
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, LargeBinaryBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
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

/// Pairs of counters (e.g. flooded, observed): merge is a saturating add.
impl Cell for [u16; 2] {
    const BYTES: usize = 4;
    fn merge(cells: &mut [[u16; 2]], other: &[[u16; 2]]) {
        for (c, o) in cells.iter_mut().zip(other) {
            c[0] = c[0].saturating_add(o[0]);
            c[1] = c[1].saturating_add(o[1]);
        }
    }
    fn write_bytes(cells: &[[u16; 2]], out: &mut Vec<u8>) {
        out.reserve(cells.len() * 4);
        for c in cells {
            out.extend_from_slice(&c[0].to_le_bytes());
            out.extend_from_slice(&c[1].to_le_bytes());
        }
    }
    fn read_bytes(bytes: &[u8], out: &mut Vec<[u16; 2]>) {
        out.extend(bytes.chunks_exact(4).map(|b| {
            [
                u16::from_le_bytes([b[0], b[1]]),
                u16::from_le_bytes([b[2], b[3]]),
            ]
        }));
    }
}

/// What a pixel column holds: recorded by the aggregates in their result
/// field's metadata ([`META_KIND`], as [`RasterKind::name`]) and read back
/// by the writers, which match on it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RasterKind {
    /// 0/1 (an extent, `flood_observed`).
    Mask,
    /// Counts of slices.
    Count,
    /// GFM's three states: 1 flooded, 0 observed dry, 255 never observed.
    States,
    /// Days since 1970-01-01 (0: never flooded).
    Date,
    /// Percent 0..=100 (255: never observed).
    Percent,
    /// Values of no declared meaning (a binary column without the metadata).
    Values,
}

impl RasterKind {
    /// Every kind.
    pub const ALL: [RasterKind; 6] = [
        RasterKind::Mask,
        RasterKind::Count,
        RasterKind::States,
        RasterKind::Date,
        RasterKind::Percent,
        RasterKind::Values,
    ];

    /// The name recorded in field metadata.
    pub fn name(self) -> &'static str {
        match self {
            RasterKind::Mask => "mask",
            RasterKind::Count => "count",
            RasterKind::States => "states",
            RasterKind::Date => "date",
            RasterKind::Percent => "percent",
            RasterKind::Values => "values",
        }
    }

    /// The kind a name in field metadata records (`None`: not a kind this
    /// build knows).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What kind of raster a function's output is, recorded in the metadata of
/// its result field ([`META_KIND`], [`META_NODATA`]) so that the writers
/// (GeoTIFF nodata, quicklook, summary) know without guessing from values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RasterMeta {
    /// What the pixels are.
    pub kind: RasterKind,
    /// The value that means "no data" in the output, if any.
    pub nodata: Option<u16>,
    /// Bytes per output pixel (1 or 2, little-endian).
    pub bytes: usize,
}

/// Field-metadata key of the raster kind of a pixel column.
pub const META_KIND: &str = "floodsql.raster";
/// Field-metadata key of the nodata value of a pixel column.
pub const META_NODATA: &str = "floodsql.nodata";

/// The day number (days since 1970-01-01) of a slice at `us` microseconds
/// since the epoch, as the date aggregates store it: 1..=65534 (0 is their
/// nodata), i.e. slices from 1970-01-02 to 2149-06-05.
pub fn day_of(us: i64) -> Option<u16> {
    let day = us.div_euclid(86_400_000_000);
    (1..=65534).contains(&day).then_some(day as u16)
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
    /// The output raster (kind, nodata, bytes per pixel).
    const RASTER: RasterMeta;
    /// Whether the function takes the slice's datetime as its 2nd argument
    /// (`NAME(pixels, datetime [, nodata])`); `update` then gets its day.
    const DATED: bool = false;
    /// Fold one time slice's pixels into the cells (`cells.len() ==
    /// pixels.len()`); `day`: the slice's [`day_of`] (0 unless `DATED`).
    /// A nodata pixel must leave its cell as it was: rows and spans of
    /// nodata are not folded at all (see `update_constant` and `inert`).
    fn update(cells: &mut [Self::Cell], pixels: &[u8], nodata: u8, day: u16);
    /// Fold a slice whose every pixel is `value` (a constant row, see
    /// [`crate::constant`]): what `update` would do with `value` repeated.
    /// Default: nothing for the nodata — a nodata pixel leaves every
    /// kernel's cell as it was (each kernel's tests pin it) — else `update`
    /// over a small block of `value`, so no pixel buffer is read.
    fn update_constant(cells: &mut [Self::Cell], value: u8, nodata: u8, day: u16) {
        if value == nodata {
            return;
        }
        const BLOCK: usize = 4096;
        let block = [value; BLOCK];
        for c in cells.chunks_mut(BLOCK) {
            Self::update(c, &block[..c.len()], nodata, day);
        }
    }
    /// Whether folding `pixels` would leave every cell as it was, so that
    /// the scan's fold may skip them. Default: all of them are the nodata (a
    /// nodata pixel leaves every kernel's cell as it was). A loop the
    /// compiler vectorises: it runs on every span of every row.
    #[inline]
    fn inert(pixels: &[u8], nodata: u8) -> bool {
        pixels.iter().fold(0u8, |a, &p| a | (p ^ nodata)) == 0
    }
    /// Merge two partial states (default: the cell type's merge).
    fn merge(cells: &mut [Self::Cell], other: &[Self::Cell]) {
        <Self::Cell as Cell>::merge(cells, other)
    }
    /// The output bytes of final cells (default: the state's bytes).
    fn finish(cells: &[Self::Cell], out: &mut Vec<u8>) {
        <Self::Cell as Cell>::write_bytes(cells, out)
    }
}

/// Whether no pixel of `pixels` is flooded (each is 0 or `nodata`): the
/// [`PixelKernel::inert`] of the kernels that only look at flooded pixels
/// (maximum extent, flood count, flood dates). A loop the compiler
/// vectorises.
#[inline]
pub fn no_flood(pixels: &[u8], nodata: u8) -> bool {
    pixels
        .iter()
        .fold(0u8, |a, &p| a | ((p != 0) & (p != nodata)) as u8)
        == 0
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
            format!(
                "{} Output: LargeBinary, one {} per pixel, row-major over the chunk.",
                K::DESCRIPTION,
                K::OUTPUT
            ),
            format!("{}({} [, nodata])", K::NAME, args_of::<K>()),
        )
        .with_argument(
            "pixels",
            "a time slice's fused uint8 pixels (flood_chunks.pixels)",
        );
        let doc = if K::DATED {
            doc.with_argument(
                "datetime",
                "the slice's timestamp (flood_chunks.datetime); its UTC day is what the cells keep",
            )
        } else {
            doc
        };
        let doc = doc
            .with_argument("nodata", "integer constant, default 255: pixels with this value are not observed")
            .with_sql_example(format!(
                "SELECT chunk_row, chunk_col, {}({}) FROM flood_chunks(...) GROUP BY chunk_row, chunk_col",
                K::NAME,
                args_of::<K>()
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

/// The arguments before `nodata`, as the docs show them.
fn args_of<K: PixelKernel>() -> &'static str {
    if K::DATED {
        "pixels, datetime"
    } else {
        "pixels"
    }
}

/// Index of the `nodata` argument.
fn nodata_index<K: PixelKernel>() -> usize {
    if K::DATED {
        2
    } else {
        1
    }
}

/// Reads the optional constant `nodata` argument (an integer literal 0..=255).
fn nodata_arg<K: PixelKernel>(args: &AccumulatorArgs) -> Result<u8> {
    let name = K::NAME;
    let Some(expr) = args.exprs.get(nodata_index::<K>()) else {
        return Ok(DEFAULT_NODATA);
    };
    let any: &dyn Any = expr.as_ref();
    let Some(lit) = any.downcast_ref::<Literal>() else {
        return plan_err!("{name}: nodata must be a constant integer 0..=255");
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
        let fixed = nodata_index::<K>();
        if arg_types.len() < fixed || arg_types.len() > fixed + 1 {
            return plan_err!(
                "{name} takes ({} [, nodata]), got {} arguments",
                args_of::<K>(),
                arg_types.len()
            );
        }
        let pixels = match &arg_types[0] {
            t @ (DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => t.clone(),
            DataType::Null => DataType::Binary,
            other => return plan_err!("{name}: pixels must be Binary, got {other}"),
        };
        let mut out = vec![pixels];
        if K::DATED {
            match &arg_types[1] {
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                    out.push(DataType::Timestamp(TimeUnit::Microsecond, None))
                }
                other => {
                    return plan_err!(
                        "{name}: datetime (2nd argument) must be a timestamp, got {other}"
                    )
                }
            }
        }
        if let Some(t) = arg_types.get(fixed) {
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

    /// The result field carries the raster's kind and nodata (see
    /// [`RasterMeta`]), which survive aliases and travel with the schema.
    fn return_field(&self, _arg_fields: &[FieldRef]) -> Result<FieldRef> {
        let mut meta = HashMap::from([(META_KIND.to_string(), K::RASTER.kind.name().to_string())]);
        if let Some(n) = K::RASTER.nodata {
            meta.insert(META_NODATA.to_string(), n.to_string());
        }
        Ok(Arc::new(
            Field::new(K::NAME, DataType::LargeBinary, true).with_metadata(meta),
        ))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[cells]", args.name),
            DataType::LargeBinary,
            true,
        ))])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let nodata = nodata_arg::<K>(&acc_args)?;
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
        let nodata = nodata_arg::<K>(&args)?;
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

/// The day of each row for a dated kernel (its 2nd argument, coerced to
/// microsecond timestamps); all 0 otherwise.
fn days_of<K: PixelKernel>(values: &[ArrayRef]) -> Result<Option<Vec<u16>>> {
    if !K::DATED {
        return Ok(None);
    }
    let Some(ts) = values.get(1) else {
        return exec_err!("{}: no datetime argument", K::NAME);
    };
    let ts = arrow::compute::cast(ts, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    let mut out = Vec::with_capacity(ts.len());
    for i in 0..ts.len() {
        if ts.is_null(i) {
            return exec_err!("{}: a slice has a NULL datetime", K::NAME);
        }
        let us = ts.value(i);
        match day_of(us) {
            Some(d) => out.push(d),
            None => {
                return exec_err!(
                    "{}: slice datetime {us} µs since 1970 lies outside 1970-01-02 .. 2149-06-05 \
                     (its day must fit the 16-bit date cells)",
                    K::NAME
                )
            }
        }
    }
    Ok(Some(out))
}

/// Folds one slice into an optional state, creating it on first use.
fn fold_slice<K: PixelKernel>(
    cells: &mut Option<Vec<K::Cell>>,
    pixels: &[u8],
    nodata: u8,
    day: u16,
) -> Result<()> {
    let c = cells.get_or_insert_with(|| vec![K::Cell::default(); pixels.len()]);
    check_len(K::NAME, c.len(), pixels.len())?;
    match crate::constant::value_of(pixels) {
        Some(v) => K::update_constant(c, v, nodata, day),
        None => update::<K>(c, pixels, nodata, day),
    }
    Ok(())
}

/// `K::update`, compiled a second time for AVX2 and run so on a CPU that has
/// it (checked once, then a cached flag): the kernels are plain loops the
/// compiler vectorises, twice as wide with AVX2 as with the x86-64 baseline
/// (SSE2) the crate is built for.
#[inline]
fn update<K: PixelKernel>(cells: &mut [K::Cell], pixels: &[u8], nodata: u8, day: u16) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above
        return unsafe { update_avx2::<K>(cells, pixels, nodata, day) };
    }
    update_spans::<K>(cells, pixels, nodata, day)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2<K: PixelKernel>(cells: &mut [K::Cell], pixels: &[u8], nodata: u8, day: u16) {
    update_spans::<K>(cells, pixels, nodata, day)
}

/// Pixels checked at once for [`PixelKernel::inert`]: a GFM row is mostly
/// runs of nodata (outside the swath) or dry land, far longer than this.
const SPAN: usize = 1024;

/// `K::update` over the spans of `pixels` that are not inert (runs of them
/// in one call), the inert ones skipped: a row that a swath covers in part
/// is folded over that part only, with the same cells as a fold of all of it.
#[inline(always)]
fn update_spans<K: PixelKernel>(cells: &mut [K::Cell], pixels: &[u8], nodata: u8, day: u16) {
    let n = pixels.len().min(cells.len());
    // pixels from `start` on are not inert and not yet folded
    let mut start = 0;
    let mut at = 0;
    while at < n {
        let end = (at + SPAN).min(n);
        if K::inert(&pixels[at..end], nodata) {
            if start < at {
                K::update(&mut cells[start..at], &pixels[start..at], nodata, day);
            }
            start = end;
        }
        at = end;
    }
    if start < n {
        K::update(&mut cells[start..n], &pixels[start..n], nodata, day);
    }
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
            K::merge(c, scratch);
        }
    }
    Ok(())
}

/// The states (`finish == false`) or final outputs of groups, one binary
/// value each (NULL for a group that saw no row).
fn cells_to_array<K: PixelKernel>(groups: Vec<Option<Vec<K::Cell>>>, finish: bool) -> ArrayRef {
    let per_cell = if finish {
        K::RASTER.bytes
    } else {
        <K::Cell as Cell>::BYTES
    };
    let bytes: usize = groups.iter().flatten().map(|c| c.len() * per_cell).sum();
    let mut b = LargeBinaryBuilder::with_capacity(groups.len(), bytes);
    let mut buf = Vec::new();
    for g in groups {
        match g {
            Some(c) => {
                buf.clear();
                if finish {
                    K::finish(&c, &mut buf);
                } else {
                    <K::Cell as Cell>::write_bytes(&c, &mut buf);
                }
                b.append_value(&buf);
            }
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// Whether row `row` passes an aggregate's FILTER.
fn passes(opt_filter: Option<&BooleanArray>, row: usize) -> bool {
    opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

/// Single-group accumulator.
#[derive(Debug)]
pub struct PixelAccumulator<K: PixelKernel> {
    nodata: u8,
    cells: Option<Vec<K::Cell>>,
    scratch: Vec<K::Cell>,
}

impl<K: PixelKernel> PixelAccumulator<K> {
    fn bytes(&self, finish: bool) -> ScalarValue {
        ScalarValue::LargeBinary(self.cells.as_ref().map(|c| {
            let mut buf = Vec::new();
            if finish {
                K::finish(c, &mut buf);
            } else {
                <K::Cell as Cell>::write_bytes(c, &mut buf);
            }
            buf
        }))
    }
}

impl<K: PixelKernel> Accumulator for PixelAccumulator<K> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let nodata = self.nodata;
        let days = days_of::<K>(values)?;
        for_each_binary(&values[0], |row, px| {
            let day = days.as_ref().map_or(0, |d| d[row]);
            fold_slice::<K>(&mut self.cells, px, nodata, day)
        })
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (cells, scratch) = (&mut self.cells, &mut self.scratch);
        for_each_binary(&states[0], |_, b| fold_state::<K>(cells, b, scratch))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.bytes(false)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.bytes(true))
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
        let days = days_of::<K>(values)?;
        let groups = &mut self.groups;
        for_each_binary(&values[0], |row, px| {
            if !passes(opt_filter, row) {
                return Ok(());
            }
            let day = days.as_ref().map_or(0, |d| d[row]);
            fold_slice::<K>(&mut groups[group_indices[row]], px, nodata, day)
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(cells_to_array::<K>(
            emit_to.take_needed(&mut self.groups),
            true,
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![cells_to_array::<K>(
            emit_to.take_needed(&mut self.groups),
            false,
        )])
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
        let days = days_of::<K>(values)?;
        for_each_binary(&values[0], |row, px| {
            if !passes(opt_filter, row) {
                return Ok(());
            }
            let day = days.as_ref().map_or(0, |d| d[row]);
            fold_slice::<K>(&mut states[row], px, nodata, day)
        })?;
        Ok(vec![cells_to_array::<K>(states, false)])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flood_count::FloodCountKernel;
    use crate::flood_dates::{FirstDateKernel, LastDateKernel};
    use crate::flood_extent_states::ExtentStatesKernel;
    use crate::flood_frequency::FrequencyKernel;
    use crate::flood_max_extent::MaxExtentKernel;
    use crate::flood_observed::ObservedKernel;
    use crate::valid_count::ValidCountKernel;

    /// `$f::<K>(args)` for every kernel of the crate.
    macro_rules! every_kernel {
        ($f:ident $(, $arg:expr)*) => {{
            $f::<MaxExtentKernel>($($arg),*);
            $f::<ObservedKernel>($($arg),*);
            $f::<ExtentStatesKernel>($($arg),*);
            $f::<FloodCountKernel>($($arg),*);
            $f::<ValidCountKernel>($($arg),*);
            $f::<FrequencyKernel>($($arg),*);
            $f::<FirstDateKernel>($($arg),*);
            $f::<LastDateKernel>($($arg),*);
        }};
    }

    /// The dispatched update (AVX2 where the CPU has it) folds exactly as
    /// the kernel's plain loop, for every kernel, over lengths with and
    /// without a vector tail.
    #[test]
    fn dispatched_update_is_the_kernels_loop() {
        fn check<K: PixelKernel>(seed: &mut u64)
        where
            K::Cell: PartialEq,
        {
            let mut next = || {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (*seed >> 56) as u8
            };
            for len in [1, 15, 31, 32, 33, 100, 4097] {
                let start: Vec<K::Cell> = (0..len).map(|_| K::Cell::default()).collect();
                let (mut a, mut b) = (start.clone(), start);
                for day in [0u16, 19_240, u16::MAX] {
                    let px: Vec<u8> = (0..len)
                        .map(|_| [0, 1, 255, 3][next() as usize % 4])
                        .collect();
                    update::<K>(&mut a, &px, 255, day);
                    K::update(&mut b, &px, 255, day);
                }
                assert!(a == b, "{} over {len} pixels", K::NAME);
            }
        }
        let mut seed = 3;
        every_kernel!(check, &mut seed);
    }

    /// Skipping inert spans folds exactly as the kernel's plain loop over
    /// the whole row: rows of long runs (nodata, dry, flooded, another
    /// value; runs shorter and longer than a span, starting anywhere), with
    /// nodata 255 and 0, onto states built by earlier slices, every kernel.
    #[test]
    fn skipping_inert_spans_folds_as_the_whole_row() {
        fn check<K: PixelKernel>(seed: &mut u64)
        where
            K::Cell: PartialEq,
        {
            let mut next = |m: usize| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 33) as usize % m
            };
            for nodata in [255u8, 0] {
                for len in [SPAN - 1, SPAN, 3 * SPAN + 17, 20_000] {
                    let mut row = || {
                        let mut px = Vec::with_capacity(len);
                        while px.len() < len {
                            let v = [nodata, nodata, 0, 1, 7, 255][next(6)];
                            let n = [1, 5, SPAN - 3, SPAN, 2 * SPAN + 1, 5000][next(6)];
                            px.extend(std::iter::repeat_n(v, n.min(len - px.len())));
                        }
                        px
                    };
                    let mut a = vec![K::Cell::default(); len];
                    let mut b = a.clone();
                    for day in [19_000u16, 19_001, 19_002, 19_003] {
                        let px = row();
                        update::<K>(&mut a, &px, nodata, day);
                        K::update(&mut b, &px, nodata, day);
                        assert!(a == b, "{}: {len} px, nodata {nodata}", K::NAME);
                    }
                }
            }
        }
        let mut seed = 11;
        every_kernel!(check, &mut seed);
    }

    /// Pixel values from a small linear congruential generator: 0, 1, 255
    /// and a few others.
    fn pixels(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                [0u8, 1, 255, 255, 0, 7][(x >> 33) as usize % 6]
            })
            .collect()
    }

    /// A constant row folded as a value (`update_constant`) leaves the same
    /// cells as its bytes folded by `update`, from states built by random
    /// slices, for the values 0, 1, 255 and another, with nodata 255 and 0,
    /// and lengths not a multiple of the block.
    fn constant_equals_bytes<K: PixelKernel>()
    where
        K::Cell: PartialEq,
    {
        for n in [1, 4095, 4096, 10_001] {
            for nodata in [255u8, 0] {
                for v in [0u8, 1, 7, 255] {
                    let mut cells = vec![K::Cell::default(); n];
                    for seed in 0..3 {
                        K::update(&mut cells, &pixels(seed, n), nodata, 19_000 + seed as u16);
                    }
                    let (mut by_value, mut by_bytes) = (cells.clone(), cells.clone());
                    K::update_constant(&mut by_value, v, nodata, 19_500);
                    K::update(&mut by_bytes, &vec![v; n], nodata, 19_500);
                    assert!(
                        by_value == by_bytes,
                        "{}: value {v}, nodata {nodata}, {n} px",
                        K::NAME
                    );
                    if v == nodata {
                        assert!(
                            by_bytes == cells,
                            "{}: a nodata slice changed cells",
                            K::NAME
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_folds_a_constant_row_as_its_bytes() {
        every_kernel!(constant_equals_bytes);
    }

    /// Through the groups accumulator: rows shared by the scan (recognised
    /// as constant) give the same state as the same bytes in a plain array.
    #[test]
    fn shared_rows_aggregate_as_plain_bytes() {
        use arrow::array::LargeBinaryArray;
        let n = 250 * 130;
        let data = pixels(9, n);
        let rows: Vec<(Option<u8>, &[u8])> = vec![
            (None, &data),
            (Some(255), &[]),
            (Some(0), &[]),
            (Some(1), &[]),
        ];
        let shared_rows: Vec<arrow::buffer::Buffer> = rows
            .iter()
            .map(|(v, d)| match v {
                Some(v) => crate::constant::shared(*v, n).unwrap(),
                None => arrow::buffer::Buffer::from_vec(d.to_vec()),
            })
            .collect();
        let offsets: Vec<i64> = (0..=rows.len()).map(|i| (i * n) as i64).collect();
        let plain: Vec<u8> = shared_rows
            .iter()
            .flat_map(|b| b.as_slice().to_vec())
            .collect();
        let plain = LargeBinaryArray::try_new(
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            plain.into(),
            None,
        )
        .unwrap();
        // one array per row so that each value is a slice of its own buffer
        let run = |arrays: Vec<ArrayRef>| {
            let mut acc = PixelGroupsAccumulator::<ExtentStatesKernel> {
                nodata: 255,
                groups: Vec::new(),
                scratch: Vec::new(),
            };
            for a in arrays {
                acc.update_batch(&[a], &[0], None, 1).unwrap();
            }
            acc.evaluate(EmitTo::All).unwrap()
        };
        let one_by_one: Vec<ArrayRef> = shared_rows
            .iter()
            .map(|b| {
                Arc::new(
                    LargeBinaryArray::try_new(
                        arrow::buffer::OffsetBuffer::new(vec![0i64, n as i64].into()),
                        b.clone(),
                        None,
                    )
                    .unwrap(),
                ) as ArrayRef
            })
            .collect();
        assert_eq!(
            crate::constant::value_of(shared_rows[1].as_slice()),
            Some(255)
        );
        let got = run(one_by_one);
        let want = run((0..rows.len())
            .map(|i| Arc::new(plain.slice(i, 1)) as ArrayRef)
            .collect());
        assert_eq!(
            got.as_binary::<i64>().value(0),
            want.as_binary::<i64>().value(0)
        );
    }
}
