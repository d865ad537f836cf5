//! Turns one framed key or value into its reader-schema form.
//!
//! Owns: the Confluent framing of the input (schema id, Protobuf message indexes) and the
//! per-pipeline scratch buffer; schemas and plans come from [`crate::schema`]. Must not: touch
//! Kafka, or parse schemas or datum bytes itself.

use std::sync::Arc;

pub use crate::schema::{FailureKind, PartFailure, ReaderSchema, ResolveError};
use crate::schema::{ParsedSchema, Readers, Schemas, TargetRegistry};
use crate::wire::{self, MessageIndexes, SchemaId};

/// The schema layer plus the pipeline's scratch buffer; owned by the pipeline thread.
pub struct Resolver {
    schemas: Schemas,
    /// Reader bytes before JSON rendering.
    scratch: Vec<u8>,
}

impl Resolver {
    pub fn new(schemas: Schemas) -> Self {
        Resolver {
            schemas,
            scratch: Vec::new(),
        }
    }

    /// Reader selection, in `target` in bridge mode (see [`Schemas::readers`]).
    pub fn readers(&self, target: Option<TargetRegistry>) -> Readers {
        self.schemas.readers(target)
    }

    /// Writer schemas asked of the registry so far (see [`Schemas::registry_lookups`]).
    pub fn registry_lookups(&self) -> u64 {
        self.schemas.registry_lookups()
    }

    /// Resolves one framed `input` to `reader`, appending the result (framed, or JSON) to `out`
    /// and the dropped writer fields that held data to `lossy`; returns the writer schema id.
    pub async fn resolve(
        &mut self,
        input: &[u8],
        reader: &ReaderSchema,
        out: &mut Vec<u8>,
        lossy: &mut Vec<Arc<str>>,
    ) -> Result<Option<SchemaId>, ResolveError> {
        let framing = |e: wire::FramingError, writer_id| {
            ResolveError::Failed(PartFailure {
                kind: FailureKind::Framing,
                message: e.to_string(),
                writer_id,
            })
        };
        let framed = wire::parse(input).map_err(|e| framing(e, None))?;
        let writer_id = framed.schema_id;
        let (indexes, body) = match &*reader.schema {
            ParsedSchema::Avro(_) => (MessageIndexes::default(), framed.payload),
            ParsedSchema::Protobuf { .. } => wire::parse_message_indexes(framed.payload)
                .map_err(|e| framing(e, Some(writer_id)))?,
        };
        let plan = self.schemas.plan(writer_id, indexes, reader).await?;
        plan.apply(
            writer_id,
            input,
            body,
            reader,
            out,
            &mut self.scratch,
            lossy,
        )
        .map_err(ResolveError::Failed)?;
        Ok(Some(writer_id))
    }
}
