//! Ballista extension codecs for floodsql's table providers and plan nodes.
//!
//! Each wraps Ballista's own codec and only adds branches for floodsql's
//! types, so Ballista's nodes (shuffle readers/writers, file formats, cache
//! nodes) keep working. A floodsql payload is `MAGIC` followed by a JSON
//! envelope that carries the writer's [version tag](crate::version); a payload
//! written by another floodsql build is refused with both versions named.
//! Functions cross the wire by name (Ballista's codecs keep the trait
//! defaults for them), resolved against the functions every role registers.
//!
//! | node | where it crosses the wire | payload |
//! |------|---------------------------|---------|
//! | `FloodChunksTable` (logical) | client → scheduler | spec + the scan plan the client resolved |
//! | `StacItemsTable` (logical) | client → scheduler | search parameters |
//! | `RegionsTable` (logical) | client → scheduler | the regions the client read (attributes, WKB) |
//! | `FloodChunksExec` (physical) | scheduler → executors | scan plan, projection (its chunk-assignment input is a plan child) |

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{exec_datafusion_err, internal_err, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::raster::exec::FloodChunksExec;
use crate::raster::plan::ScanPlan;
use crate::raster::table::{FloodChunksSpec, FloodChunksTable};
use crate::stac::search::SearchParams;
use crate::stac::table::StacItemsTable;
use crate::vector::regions::RegionSet;
use crate::vector::table::RegionsTable;
use crate::version::{check_peer, version_tag};

/// First bytes of every floodsql payload (Ballista's are protobuf messages,
/// which cannot start with these bytes followed by `{`).
const MAGIC: &[u8] = b"FLOODSQL\x01";

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// Version tag of the process that wrote the payload.
    floodsql: String,
    node: Node,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Node {
    FloodChunksTable {
        spec: Box<FloodChunksSpec>,
        plan: Option<Box<ScanPlan>>,
    },
    StacItemsTable {
        params: SearchParams,
    },
    /// The regions the client read (the scheduler never opens the file).
    RegionsTable {
        set: Box<RegionSet>,
    },
    /// Its input (the chunk assignment, an in-memory source) travels as a
    /// plan child, so that Ballista can restrict it to a task's partitions.
    FloodChunksExec {
        plan: Box<ScanPlan>,
        concurrency: usize,
        projection: Option<Vec<usize>>,
    },
}

fn encode(node: Node, buf: &mut Vec<u8>) -> Result<()> {
    let env = Envelope {
        floodsql: version_tag().to_string(),
        node,
    };
    buf.extend_from_slice(MAGIC);
    serde_json::to_writer(&mut *buf, &env)
        .map_err(|e| exec_datafusion_err!("floodsql codec: cannot encode plan node: {e}"))
}

/// `None` when `buf` is not a floodsql payload. With `receiver`, a payload
/// written by another floodsql version is refused; without, it is decoded
/// anyway (executors refuse the whole task instead, with a message the
/// scheduler passes on).
fn decode(buf: &[u8], receiver: Option<&str>) -> Result<Option<Node>> {
    let Some(body) = buf.strip_prefix(MAGIC) else {
        return Ok(None);
    };
    #[derive(Deserialize)]
    struct Header {
        floodsql: String,
    }
    // the version first: a node of another version may not even parse
    let header: Header = serde_json::from_slice(body)
        .map_err(|e| exec_datafusion_err!("floodsql codec: unreadable payload header: {e}"))?;
    match receiver {
        Some(r) => check_peer(&header.floodsql, r)?,
        None if header.floodsql != version_tag() => tracing::warn!(
            "plan node from floodsql {} decoded by floodsql {}",
            header.floodsql,
            version_tag()
        ),
        None => {}
    }
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| exec_datafusion_err!("floodsql codec: unreadable plan node: {e}"))?;
    Ok(Some(env.node))
}

/// Logical codec: floodsql's table providers, then Ballista's.
#[derive(Debug, Default)]
pub(crate) struct FloodsqlLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for FloodsqlLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match decode(
            buf,
            Some("the scheduler refuses a table planned by the client"),
        )? {
            Some(Node::FloodChunksTable { spec, plan }) => Ok(Arc::new(match plan {
                Some(p) => FloodChunksTable::with_plan(*spec, Arc::new(*p)),
                None => FloodChunksTable::new(*spec),
            })),
            Some(Node::StacItemsTable { params }) => Ok(Arc::new(StacItemsTable { params })),
            Some(Node::RegionsTable { set }) => Ok(Arc::new(RegionsTable::new(*set))),
            Some(other) => internal_err!("floodsql codec: {other:?} is not a table"),
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(t) = any.downcast_ref::<FloodChunksTable>() {
            return encode(
                Node::FloodChunksTable {
                    spec: Box::new(t.spec.clone()),
                    plan: t.resolved().map(|p| Box::new((*p).clone())),
                },
                buf,
            );
        }
        if let Some(t) = any.downcast_ref::<StacItemsTable>() {
            return encode(
                Node::StacItemsTable {
                    params: t.params.clone(),
                },
                buf,
            );
        }
        if let Some(t) = any.downcast_ref::<RegionsTable>() {
            return encode(
                Node::RegionsTable {
                    set: Box::new((*t.set).clone()),
                },
                buf,
            );
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// Physical codec: `FloodChunksExec`, then Ballista's nodes.
#[derive(Debug, Default)]
pub(crate) struct FloodsqlPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for FloodsqlPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match decode(buf, None)? {
            Some(Node::FloodChunksExec {
                plan,
                concurrency,
                projection,
            }) => match inputs {
                [input] => Ok(Arc::new(FloodChunksExec::with_input(
                    Arc::new(*plan),
                    input.clone(),
                    concurrency,
                    projection,
                )?)),
                _ => internal_err!("FloodChunksExec has one input, got {}", inputs.len()),
            },
            Some(other) => internal_err!("floodsql codec: {other:?} is not an execution plan"),
            None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(s) = any.downcast_ref::<FloodChunksExec>() {
            return encode(
                Node::FloodChunksExec {
                    plan: Box::new((**s.scan_plan()).clone()),
                    concurrency: s.concurrency(),
                    projection: s.projection().cloned(),
                },
                buf,
            );
        }
        self.inner.try_encode(node, buf, proto_converter)
    }
}
