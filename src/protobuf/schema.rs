//! Descriptor pools from registry Protobuf schemas, and Confluent message-index paths.
//!
//! Owns: reading a Protobuf schema and its references in either form a registry hands out,
//! compiling them with protox (in memory; no file system, no `protoc`) into one descriptor pool,
//! and the index ↔ message mapping. Must not: fetch anything (the caller hands over every
//! reference's text) or look at message bytes.
//!
//! Two forms are accepted for the main schema and, independently, for every reference (so forms
//! may be mixed):
//!
//! - `.proto` source text (what Confluent's Java serializers and most tools register);
//! - a base64-encoded serialized `google.protobuf.FileDescriptorProto` (what confluent-kafka's
//!   Python `ProtobufSerializer` registers, and what a registry may hand back).
//!
//! Detection rule ([`descriptor_form`]): after removing ASCII whitespace, the text is taken as a
//! descriptor when it is non-empty, is valid standard base64 (padding optional), decodes as a
//! `FileDescriptorProto`, and that descriptor looks like one a compiler wrote: a non-empty
//! `name` without whitespace or control characters, a `package` that is empty or dot-separated
//! identifiers, non-empty dependency names, and `syntax` empty, `proto2`, `proto3` or
//! `editions`. Anything else is `.proto` text. Real `.proto` text is practically never valid
//! base64 (`;`, `{`, `"` and a `=` before the end are outside the alphabet), and the empty
//! schema, which is valid base64 of an empty descriptor, is text (an empty proto2 file). When
//! text that did decode from base64 also fails to parse as `.proto`, the error says why it was
//! not taken as a descriptor.
//!
//! A descriptor is added to the pool under the name it is looked up by (the main schema's
//! `main_name`, a reference's import name), not the `name` inside it, so imports between forms
//! meet. Custom option extensions inside a descriptor are not kept (the transcoder reads none).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use prost::Message as _;
use prost_reflect::prost_types::FileDescriptorProto;
use prost_reflect::{DescriptorPool, MessageDescriptor};
use protox::file::{File, FileResolver, GoogleFileResolver};

use super::SchemaError;
use crate::wire::MessageIndexes;

/// Standard alphabet; padding optional (Python pads, hand-made strings sometimes do not).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One schema (main or reference) as the registry handed it over.
enum Form {
    /// `.proto` source. `not_descriptor` says why text that is valid base64 was not taken as a
    /// descriptor (for the error, should the text not parse either).
    Text {
        text: String,
        not_descriptor: Option<String>,
    },
    /// A decoded `FileDescriptorProto`, already renamed to its lookup name.
    Descriptor(Box<FileDescriptorProto>),
}

impl Form {
    fn read(name: &str, text: &str) -> Form {
        match descriptor_form(text) {
            Ok(mut fd) => {
                fd.name = Some(name.to_owned());
                Form::Descriptor(Box::new(fd))
            }
            Err(not_descriptor) => Form::Text {
                text: text.to_owned(),
                not_descriptor,
            },
        }
    }

    /// How the form appears in an error.
    fn describe(&self) -> String {
        match self {
            Form::Descriptor(_) => "read as a base64 FileDescriptorProto".to_owned(),
            Form::Text {
                not_descriptor: None,
                ..
            } => "read as .proto text".to_owned(),
            Form::Text {
                not_descriptor: Some(why),
                ..
            } => format!(
                "read as .proto text; it is valid base64 but not a FileDescriptorProto: {why}"
            ),
        }
    }
}

/// The detection rule of the module header: `Ok(descriptor)` when `text` is a base64-encoded
/// `FileDescriptorProto`; `Err(None)` when it is not base64 at all (plain `.proto` text);
/// `Err(Some(reason))` when it is base64 but not a sensible descriptor.
fn descriptor_form(text: &str) -> Result<FileDescriptorProto, Option<String>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(None);
    }
    let bytes = BASE64.decode(compact.as_bytes()).map_err(|_| None)?;
    let fd = FileDescriptorProto::decode(bytes.as_slice())
        .map_err(|e| Some(format!("it does not decode: {e}")))?;
    let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    let identifier = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !plain(fd.name()) {
        return Err(Some(format!(
            "file name {:?} is not a file name",
            fd.name()
        )));
    }
    if !fd.package().is_empty() && !fd.package().split('.').all(identifier) {
        return Err(Some(format!(
            "package {:?} is not a package name",
            fd.package()
        )));
    }
    if let Some(dep) = fd.dependency.iter().find(|d| !plain(d)) {
        return Err(Some(format!("import {dep:?} is not a file name")));
    }
    if !matches!(fd.syntax(), "" | "proto2" | "proto3" | "editions") {
        return Err(Some(format!("syntax {:?} is unknown", fd.syntax())));
    }
    Ok(fd)
}

/// Serves the registry's schemas to protox by import name, then the well-known types.
struct RegistryFiles {
    main_name: String,
    files: HashMap<String, Form>,
    google: GoogleFileResolver,
}

impl FileResolver for RegistryFiles {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        (path == Path::new(&self.main_name)).then(|| self.main_name.clone())
    }

    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(Form::Text { text, .. }) => File::from_source(name, text),
            Some(Form::Descriptor(fd)) => Ok(File::from_file_descriptor_proto((**fd).clone())),
            None => self.google.open_file(name),
        }
    }
}

/// Builds a descriptor pool from what the registry hands out: the schema (`main_text`, added to
/// the pool as file `main_name`) plus its references (import name → schema, already fetched
/// recursively by the caller). Each of them may be `.proto` text or a base64-encoded
/// `FileDescriptorProto` (see the module header for how the form is told apart). References
/// are looked up by the exact name the importing file uses. `google/protobuf/*.proto`
/// well-known types resolve without being passed in (a reference of the same name, if given,
/// wins). An error names the file it is in and the form that file was read as.
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
    let mut files: HashMap<String, Form> = references
        .iter()
        .map(|(name, text)| (name.clone(), Form::read(name, text)))
        .collect();
    files.insert(main_name.to_owned(), Form::read(main_name, main_text));
    let resolver = RegistryFiles {
        main_name: main_name.to_owned(),
        files,
        google: GoogleFileResolver::new(),
    };
    // Form descriptions for errors, taken before the resolver moves into the compiler.
    let forms: HashMap<String, String> = resolver
        .files
        .iter()
        .map(|(name, form)| (name.clone(), form.describe()))
        .collect();
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(main_name)
        .map_err(|err| SchemaError::Compile {
            file: main_name.to_owned(),
            message: match err.file() {
                Some(f) => {
                    let form = forms
                        .get(f)
                        .map(|form| format!(" ({form})"))
                        .unwrap_or_default();
                    if f == main_name {
                        format!("{err}{form}")
                    } else {
                        format!("in {f}{form}: {err}")
                    }
                }
                None => err.to_string(),
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
