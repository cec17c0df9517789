//! Minimisation in transit: what a policy requires done to each kind of column
//! ([`Requirement`]), the plan for one file of a dataset ([`Plan`]), and the streaming
//! transformers that apply it — CSV and JSON Lines row by row ([`tabular`]), Parquet row
//! group by row group ([`parquet`]) — with the keyed hash ([`keys`]) pseudonyms come from.

pub mod batch;
pub mod keys;
pub mod parquet;
pub mod redact;
pub mod stream;
pub mod tabular;

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::schema::{ColumnKind, Format, Granularity, Schema};
pub use keys::{KeyedHash, Keyring};
pub use redact::Redactor;

/// Longest record (CSV row, JSON line) a transformer holds at once: a longer one fails
/// the transfer, so memory stays bounded whatever the upstream sends.
pub const MAX_RECORD: usize = 8 << 20;

/// What is done to a column, weakest first (when two origins ask for different methods for
/// one kind, the stronger wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Patterns configured in `transform.redact` are replaced in the text.
    Redact,
    /// Coarsened to the column's declared granularity (dropped when it declares none).
    Generalise,
    /// Replaced by a keyed HMAC-SHA-256 pseudonym (deterministic: joins still work).
    Pseudonymise,
    /// Left out of the output.
    Drop,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Redact => "redact",
            Method::Generalise => "generalise",
            Method::Pseudonymise => "pseudonymise",
            Method::Drop => "drop",
        }
    }
}

/// A transformation a rule requires: a method for each kind of column it names (columns
/// of other kinds are sent as they are).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Sorted by kind; one entry per kind.
    pub methods: Vec<(ColumnKind, Method)>,
}

impl Requirement {
    pub fn method(&self, kind: ColumnKind) -> Option<Method> {
        self.methods
            .iter()
            .find_map(|(k, m)| (*k == kind).then_some(*m))
    }

    /// Adds `other`'s methods, keeping the stronger of two for one kind.
    pub fn merge(&mut self, other: &Requirement) {
        for (k, m) in &other.methods {
            match self.methods.iter_mut().find(|(mk, _)| mk == k) {
                Some((_, have)) => *have = (*have).max(*m),
                None => self.methods.push((*k, *m)),
            }
        }
        self.methods.sort();
    }

    /// `identifier: pseudonymise, special: drop`.
    pub fn summary(&self) -> String {
        self.methods
            .iter()
            .map(|(k, m)| format!("{}: {}", k.as_str(), m.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What is done to one column of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    Drop,
    Pseudonymise,
    Generalise(Granularity),
    Redact,
}

/// Why a transformation cannot be planned; the transfer is refused (fail closed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "the data must be transformed ({0}) but its catalog entry declares no schema, so the gateway cannot tell which columns to transform"
    )]
    NoSchema(String),
    #[error(
        "the data must be transformed but the format of `{0}` is unknown (declare `schema.format`, or name the file .csv, .jsonl or .parquet)"
    )]
    UnknownFormat(String),
    #[error(
        "the data must be pseudonymised but the gateway holds no pseudonymisation key for region `{0}`"
    )]
    NoKey(String),
}

/// The transformation of one file: an action per declared column, the key pseudonyms are
/// made with, the redaction patterns.
#[derive(Clone)]
pub struct Plan {
    pub format: Format,
    pub schema: Arc<Schema>,
    pub actions: Vec<Action>,
    /// Set when some column is pseudonymised.
    pub key: Option<Arc<keys::Key>>,
    pub redactor: Arc<Redactor>,
    /// The region whose key pseudonymises (the origin's regime).
    pub region: String,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("format", &self.format)
            .field("actions", &self.actions)
            .field("key_id", &self.key.as_ref().map(|k| k.id.as_str()))
            .finish_non_exhaustive()
    }
}

/// What one transformer keeps between values: a memo of pseudonyms per column. (The
/// redaction patterns stay shared: their match states, warm, come from the regex crate's
/// pool; a copy per transformer would build its states anew for every batch.)
pub struct Scratch {
    memos: Vec<keys::Memo>,
}

/// What the decision record says was done: columns by method and the key's id (never
/// the key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub format: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pseudonymise: Vec<String>,
    /// `column:granularity`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generalise: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl Plan {
    /// Plans the transformation `req` of the file at `path` of a dataset with `schema`.
    pub fn new(
        req: &Requirement,
        schema: Option<&Arc<Schema>>,
        path: &str,
        keyring: &Keyring,
        region: &str,
        redactor: &Arc<Redactor>,
    ) -> Result<Plan, PlanError> {
        let schema = schema.ok_or_else(|| PlanError::NoSchema(req.summary()))?;
        let format = schema
            .format_of(path)
            .ok_or_else(|| PlanError::UnknownFormat(path.to_string()))?;
        let actions: Vec<Action> = schema
            .columns
            .iter()
            .map(|c| match req.method(c.kind) {
                _ if c.kind == ColumnKind::NonPersonal => Action::Keep,
                None => Action::Keep,
                Some(Method::Drop) => Action::Drop,
                Some(Method::Pseudonymise) => Action::Pseudonymise,
                // A column without a declared granularity cannot be coarsened: left out.
                Some(Method::Generalise) => c.generalise.map_or(Action::Drop, Action::Generalise),
                Some(Method::Redact) => Action::Redact,
            })
            .collect();
        let key = if actions.contains(&Action::Pseudonymise) {
            Some(
                keyring
                    .current(region)
                    .ok_or_else(|| PlanError::NoKey(region.to_string()))?,
            )
        } else {
            None
        };
        Ok(Plan {
            format,
            schema: schema.clone(),
            actions,
            key,
            redactor: redactor.clone(),
            region: region.to_string(),
        })
    }

    /// Indexes of the columns that are sent, in order.
    pub fn kept(&self) -> impl Iterator<Item = usize> + '_ {
        self.actions
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != Action::Drop)
            .map(|(i, _)| i)
    }

    /// What one transformer keeps for [`Plan::value`].
    pub fn scratch(&self) -> Scratch {
        Scratch {
            memos: self.actions.iter().map(|_| keys::Memo::default()).collect(),
        }
    }

    /// Transforms one value of column `i` into `out` (a dropped column's value is not
    /// asked); `scratch` is the transformer's, from [`Plan::scratch`].
    pub fn value(&self, i: usize, v: &str, out: &mut String, scratch: &mut Scratch) {
        match self.actions.get(i).copied().unwrap_or(Action::Drop) {
            Action::Keep => out.push_str(v),
            Action::Drop => {}
            Action::Pseudonymise => {
                if !v.is_empty()
                    && let Some(k) = &self.key
                {
                    match scratch.memos.get_mut(i) {
                        Some(m) => m.pseudonym_into(&k.hash, v, out),
                        None => k.hash.pseudonym_into(v, out),
                    }
                }
            }
            Action::Generalise(g) => generalise(g, v, out),
            Action::Redact => self.redactor.redact_into(v, out),
        }
    }

    /// What was done, for the decision record.
    pub fn applied(&self) -> Applied {
        let mut a = Applied {
            format: self.format.as_str().into(),
            key_id: self.key.as_ref().map(|k| k.id.clone()),
            ..Applied::default()
        };
        for (c, act) in self.schema.columns.iter().zip(&self.actions) {
            let name = c.name.clone();
            match act {
                Action::Keep => {}
                Action::Drop => a.drop.push(name),
                Action::Pseudonymise => a.pseudonymise.push(name),
                Action::Generalise(g) => a.generalise.push(format!("{name}:{g}")),
                Action::Redact => a.redact.push(name),
            }
        }
        a
    }

    /// The `Bordergate-Transform` header: `drop=a,b; pseudonymise=c; key=eu-2026-01`.
    pub fn header(&self) -> String {
        self.applied().header()
    }

    /// The ETag of the transformed output of a file whose ETag is `etag`: the same file,
    /// plan and key give the same bytes, so the same tag; never the original's.
    pub fn etag(&self, etag: Option<&str>) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(etag.unwrap_or("").as_bytes());
        ctx.update(b"\0");
        ctx.update(self.header().as_bytes());
        let d = ctx.finish();
        format!("\"bgt-{}\"", hex::encode(&d.as_ref()[..12]))
    }
}

impl Applied {
    pub fn header(&self) -> String {
        let mut parts = Vec::new();
        for (m, cols) in [
            ("drop", &self.drop),
            ("pseudonymise", &self.pseudonymise),
            ("generalise", &self.generalise),
            ("redact", &self.redact),
        ] {
            if !cols.is_empty() {
                parts.push(format!("{m}={}", cols.join(",")));
            }
        }
        if let Some(k) = &self.key_id {
            parts.push(format!("key={k}"));
        }
        if parts.is_empty() {
            parts.push("none".into());
        }
        parts.join("; ")
    }
}

/// Coarsens `v` to `g`; a value that does not have the expected shape is left out (empty):
/// a value the gateway cannot coarsen is not sent.
pub fn generalise(g: Granularity, v: &str, out: &mut String) {
    let v = v.trim();
    match g {
        Granularity::Year | Granularity::Month => {
            let b = v.as_bytes();
            let digits = |r: std::ops::Range<usize>| {
                b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit))
            };
            let year = digits(0..4);
            let month = year && b.get(4) == Some(&b'-') && digits(5..7);
            match g {
                Granularity::Year if year => out.push_str(&v[..4]),
                Granularity::Month if month => out.push_str(&v[..7]),
                _ => {}
            }
        }
        Granularity::Prefix(n) => out.extend(v.chars().take(usize::from(n))),
        Granularity::Band(w) => {
            if let Ok(x) = v.parse::<f64>()
                && x.is_finite()
                && x.abs() < 1e15
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                let lo = ((x / w as f64).floor() as i64).saturating_mul(w as i64);
                let hi = lo.saturating_add(w as i64 - 1);
                let _ = write!(out, "{lo}-{hi}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests;
