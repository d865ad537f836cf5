//! Descriptor pools from registry `.proto` text, and Confluent message-index paths.
//!
//! Owns: compiling the schema text and its references with protox (in memory; no file system,
//! no `protoc`) and the index ↔ message mapping. Must not: fetch anything (the caller hands over
//! every reference's text) or look at message bytes.

use std::collections::HashMap;
use std::path::Path;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use protox::file::{File, FileResolver, GoogleFileResolver};

use super::SchemaError;
use crate::wire::MessageIndexes;

/// Serves the registry's texts to protox by import name, then the well-known types.
struct RegistryFiles {
    main_name: String,
    texts: HashMap<String, String>,
    google: GoogleFileResolver,
}

impl FileResolver for RegistryFiles {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        (path == Path::new(&self.main_name)).then(|| self.main_name.clone())
    }

    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.texts.get(name) {
            Some(text) => File::from_source(name, text),
            None => self.google.open_file(name),
        }
    }
}

/// Builds a descriptor pool from registry text: the schema's `.proto` text (`main_text`, added
/// to the pool as file `main_name`) plus its references (import name → `.proto` text, already
/// fetched recursively by the caller). References are looked up by the exact name the `import`
/// statement uses. `google/protobuf/*.proto` well-known types resolve without being passed in
/// (a reference of the same name, if given, wins).
pub fn build_pool(
    main_name: &str,
    main_text: &str,
    references: &[(String, String)],
) -> Result<DescriptorPool, SchemaError> {
    if main_name.is_empty() {
        return Err(SchemaError::Compile {
            file: String::new(),
            message: "the schema needs a non-empty file name".to_owned(),
        });
    }
    let mut texts: HashMap<String, String> = references.iter().cloned().collect();
    texts.insert(main_name.to_owned(), main_text.to_owned());
    let resolver = RegistryFiles {
        main_name: main_name.to_owned(),
        texts,
        google: GoogleFileResolver::new(),
    };
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(main_name)
        .map_err(|err| SchemaError::Compile {
            file: main_name.to_owned(),
            message: match err.file() {
                Some(f) if f != main_name => format!("in {f}: {err}"),
                _ => err.to_string(),
            },
        })?;
    Ok(compiler.descriptor_pool())
}

/// Messages that carry a Confluent index at one level: declared messages in declaration order.
/// Map entry types are synthesized by the compiler, not declared, and Confluent's reference
/// implementation (which indexes the parsed schema, not the descriptor) does not count them.
fn indexable(messages: impl Iterator<Item = MessageDescriptor>) -> Vec<MessageDescriptor> {
    messages.filter(|m| !m.is_map_entry()).collect()
}

/// The message a Confluent message-index path points at within the main file: the first index
/// is the position among the file's top-level messages, each further one the position among
/// the previous message's nested messages. An empty path means `[0]`.
pub fn message_for_indexes(
    pool: &DescriptorPool,
    main_name: &str,
    idx: &MessageIndexes,
) -> Result<MessageDescriptor, SchemaError> {
    let file = pool
        .get_file_by_name(main_name)
        .ok_or_else(|| SchemaError::FileNotFound {
            file: main_name.to_owned(),
        })?;
    let path: &[i32] = if idx.0.is_empty() { &[0] } else { &idx.0 };
    let mut level_messages = indexable(file.messages());
    let mut found = None;
    for (level, &position) in path.iter().enumerate() {
        let Some(msg) = usize::try_from(position)
            .ok()
            .and_then(|p| level_messages.get(p))
            .cloned()
        else {
            return Err(SchemaError::NoSuchMessage {
                file: main_name.to_owned(),
                indexes: path.to_vec(),
                level,
                position,
                available: level_messages.len(),
            });
        };
        level_messages = indexable(msg.child_messages());
        found = Some(msg);
    }
    found.ok_or_else(|| SchemaError::NoSuchMessage {
        file: main_name.to_owned(),
        indexes: path.to_vec(),
        level: 0,
        position: 0,
        available: 0,
    })
}

/// The inverse of [`message_for_indexes`], for framing with the reader schema: the index path
/// of `msg` within its file. (A map entry type, which has no Confluent index, gets position 0
/// at its own level.)
pub fn indexes_for_message(msg: &MessageDescriptor) -> MessageIndexes {
    let mut path = Vec::new();
    let mut current = msg.clone();
    loop {
        let parent = current.parent_message();
        let siblings = match &parent {
            Some(p) => indexable(p.child_messages()),
            None => indexable(current.parent_file().messages()),
        };
        let position = siblings
            .iter()
            .position(|m| m.full_name() == current.full_name())
            .unwrap_or(0);
        path.push(i32::try_from(position).unwrap_or(i32::MAX));
        match parent {
            Some(p) => current = p,
            None => break,
        }
    }
    path.reverse();
    MessageIndexes(path)
}
