//! A flat, resolved view of one apache-avro `Schema`, made for plan compilation and skipping.
//!
//! Owns: turning a `Schema` tree (with `Ref`s to named types and logical types) into an arena of
//! [`Ty`] nodes addressed by [`TyId`], so that recursive types are plain index cycles and every
//! logical type is reduced to the encoding it rides on. Must not touch: resolution rules (that is
//! `compile.rs`), bytes (that is `exec.rs`); no I/O.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, ResolvedSchema, UuidSchema};

use super::error::PlanError;

/// Index into [`Types::tys`].
pub(crate) type TyId = u32;

/// Name and aliases of a named type (record, enum, fixed).
#[derive(Debug, Clone)]
pub(crate) struct Named {
    /// Full name, `ns.Name`.
    pub full: String,
    /// Unqualified name, `Name`.
    pub name: String,
    /// Aliases, fully qualified by the parser (namespace of the type when an alias has none).
    pub aliases: Vec<String>,
}

impl Named {
    fn from_name(name: &Name, aliases: Option<&Vec<apache_avro::schema::Alias>>) -> Self {
        let full = name.fullname(None);
        let aliases = aliases
            .map(|a| {
                a.iter()
                    .map(|alias| alias.fully_qualified_name(name.namespace()).fullname(None))
                    .collect()
            })
            .unwrap_or_default();
        Named {
            full,
            name: name.name().to_string(),
            aliases,
        }
    }

    /// Does a writer type named `writer` resolve to this (reader) name? The spec matches on the
    /// unqualified name; we also accept the full name and any reader alias (qualified or not).
    pub fn accepts(&self, writer: &Named) -> bool {
        self.name == writer.name
            || self.full == writer.full
            || self
                .aliases
                .iter()
                .any(|a| *a == writer.full || unqualified(a) == writer.name)
    }
}

fn unqualified(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    pub name: String,
    pub aliases: Vec<String>,
    pub default: Option<serde_json::Value>,
    pub ty: TyId,
}

/// One Avro type, logical types already reduced to their underlying encoding.
#[derive(Debug, Clone)]
pub(crate) enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed {
        named: Named,
        size: usize,
    },
    Enum {
        named: Named,
        symbols: Vec<String>,
        default: Option<String>,
    },
    Array(TyId),
    Map(TyId),
    Union(Vec<TyId>),
    Record {
        named: Named,
        fields: Vec<FieldDef>,
    },
}

impl Ty {
    /// Short human description for error messages, e.g. `string`, `record Address`.
    pub fn describe(&self) -> String {
        match self {
            Ty::Null => "null".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Int => "int".into(),
            Ty::Long => "long".into(),
            Ty::Float => "float".into(),
            Ty::Double => "double".into(),
            Ty::Bytes => "bytes".into(),
            Ty::String => "string".into(),
            Ty::Fixed { named, size } => format!("fixed {}({size})", named.name),
            Ty::Enum { named, .. } => format!("enum {}", named.name),
            Ty::Array(_) => "array".into(),
            Ty::Map(_) => "map".into(),
            Ty::Union(_) => "union".into(),
            Ty::Record { named, .. } => format!("record {}", named.name),
        }
    }

    pub fn named(&self) -> Option<&Named> {
        match self {
            Ty::Fixed { named, .. } | Ty::Enum { named, .. } | Ty::Record { named, .. } => {
                Some(named)
            }
            _ => None,
        }
    }
}

/// The arena for one schema.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    pub tys: Vec<Ty>,
    /// `true` for types whose every value encodes to zero bytes (null, fixed(0), records of those).
    /// Arrays of such items need an explicit item cap: the input length cannot bound them.
    pub zero_size: Vec<bool>,
    pub root: TyId,
}

impl Types {
    pub fn get(&self, id: TyId) -> &Ty {
        // Ids are produced by `build` and never come from input bytes.
        &self.tys[id as usize]
    }

    /// Builds the arena for `schema`. `label` names the schema in error messages.
    pub fn build(schema: &Schema, label: &str) -> Result<Types, PlanError> {
        let resolved = ResolvedSchema::new(schema).map_err(|e| PlanError::InvalidSchema {
            path: label.to_string(),
            reason: e.to_string(),
        })?;
        let mut b = Builder {
            tys: Vec::new(),
            by_name: HashMap::new(),
            defs: resolved.get_names(),
        };
        let root = b.add(schema, label)?;
        let zero_size = zero_size_fixpoint(&b.tys);
        Ok(Types {
            tys: b.tys,
            zero_size,
            root,
        })
    }
}

struct Builder<'s, 'n> {
    tys: Vec<Ty>,
    /// Named types already in the arena, by full name (and by full alias, for `Ref`s to aliases).
    by_name: HashMap<String, TyId>,
    /// The parser's definitions of every named type, used to follow a `Ref` seen before its
    /// definition was walked here.
    defs: &'n HashMap<Name, &'s Schema>,
}

impl Builder<'_, '_> {
    fn push(&mut self, ty: Ty) -> TyId {
        self.tys.push(ty);
        (self.tys.len() - 1) as TyId
    }

    fn register(&mut self, named: &Named, id: TyId) {
        self.by_name.insert(named.full.clone(), id);
        for alias in &named.aliases {
            self.by_name.entry(alias.clone()).or_insert(id);
        }
    }

    fn add_fixed(
        &mut self,
        name: &Name,
        aliases: Option<&Vec<apache_avro::schema::Alias>>,
        size: usize,
    ) -> TyId {
        let full = name.fullname(None);
        if let Some(&id) = self.by_name.get(&full) {
            return id;
        }
        let named = Named::from_name(name, aliases);
        let id = self.push(Ty::Fixed {
            named: named.clone(),
            size,
        });
        self.register(&named, id);
        id
    }

    fn add(&mut self, schema: &Schema, path: &str) -> Result<TyId, PlanError> {
        Ok(match schema {
            Schema::Null => self.push(Ty::Null),
            Schema::Boolean => self.push(Ty::Boolean),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.push(Ty::Int),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.push(Ty::Long),
            Schema::Float => self.push(Ty::Float),
            Schema::Double => self.push(Ty::Double),
            Schema::Bytes | Schema::BigDecimal => self.push(Ty::Bytes),
            Schema::String => self.push(Ty::String),
            Schema::Uuid(UuidSchema::String) => self.push(Ty::String),
            Schema::Uuid(UuidSchema::Bytes) => self.push(Ty::Bytes),
            Schema::Uuid(UuidSchema::Fixed(f)) | Schema::Duration(f) => {
                self.add_fixed(&f.name, f.aliases.as_ref(), f.size)
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => self.push(Ty::Bytes),
                InnerDecimalSchema::Fixed(f) => self.add_fixed(&f.name, f.aliases.as_ref(), f.size),
            },
            Schema::Fixed(f) => self.add_fixed(&f.name, f.aliases.as_ref(), f.size),
            Schema::Enum(e) => {
                let full = e.name.fullname(None);
                if let Some(&id) = self.by_name.get(&full) {
                    return Ok(id);
                }
                let named = Named::from_name(&e.name, e.aliases.as_ref());
                let id = self.push(Ty::Enum {
                    named: named.clone(),
                    symbols: e.symbols.clone(),
                    default: e.default.clone(),
                });
                self.register(&named, id);
                id
            }
            Schema::Array(a) => {
                let item = self.add(&a.items, &format!("{path}[]"))?;
                self.push(Ty::Array(item))
            }
            Schema::Map(m) => {
                let value = self.add(&m.types, &format!("{path}{{}}"))?;
                self.push(Ty::Map(value))
            }
            Schema::Union(u) => {
                let mut branches = Vec::with_capacity(u.variants().len());
                for v in u.variants() {
                    branches.push(self.add(v, path)?);
                }
                self.push(Ty::Union(branches))
            }
            Schema::Record(r) => {
                let full = r.name.fullname(None);
                if let Some(&id) = self.by_name.get(&full) {
                    return Ok(id);
                }
                let named = Named::from_name(&r.name, r.aliases.as_ref());
                // Register before walking the fields so that a field referring back to this
                // record (a linked list, a tree) finds it: recursion becomes an index cycle.
                let id = self.push(Ty::Record {
                    named: named.clone(),
                    fields: Vec::new(),
                });
                self.register(&named, id);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let ty = self.add(&f.schema, &format!("{path}.{}", f.name))?;
                    fields.push(FieldDef {
                        name: f.name.clone(),
                        aliases: f.aliases.clone(),
                        default: f.default.clone(),
                        ty,
                    });
                }
                if let Some(Ty::Record { fields: slot, .. }) = self.tys.get_mut(id as usize) {
                    *slot = fields;
                }
                id
            }
            Schema::Ref { name } => {
                let full = name.fullname(None);
                if let Some(&id) = self.by_name.get(&full) {
                    return Ok(id);
                }
                match self.defs.get(name) {
                    Some(def) => self.add(def, path)?,
                    None => {
                        return Err(PlanError::InvalidSchema {
                            path: path.to_string(),
                            reason: format!("reference to undefined type {full}"),
                        });
                    }
                }
            }
        })
    }
}

/// Least fixed point of "every value of this type encodes to zero bytes".
fn zero_size_fixpoint(tys: &[Ty]) -> Vec<bool> {
    let mut zero = vec![false; tys.len()];
    loop {
        let mut changed = false;
        for (i, ty) in tys.iter().enumerate() {
            if zero[i] {
                continue;
            }
            let now = match ty {
                Ty::Null => true,
                Ty::Fixed { size, .. } => *size == 0,
                Ty::Record { fields, .. } => fields
                    .iter()
                    .all(|f| zero.get(f.ty as usize).copied().unwrap_or(false)),
                _ => false,
            };
            if now {
                zero[i] = true;
                changed = true;
            }
        }
        if !changed {
            return zero;
        }
    }
}
