//! A dataset's declared schema: its format and what each column or field holds, which
//! decides what a transformation does to it (see [`crate::transform`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Category;

/// How a dataset's files are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CSV with a header line (RFC 4180).
    Csv,
    /// JSON Lines: one JSON object per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// The format a file name's extension names, if any.
    pub fn of_path(path: &str) -> Option<Format> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// The media type a response in this format carries.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Jsonl => "application/jsonl",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// What a column holds, for minimisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColumnKind {
    /// Identifies a person directly: name, e-mail, phone, customer id.
    Identifier,
    /// Identifies in combination: birth date, postcode, age.
    QuasiIdentifier,
    /// Special-category (GDPR Art. 9) or criminal-offence (Art. 10) data.
    Special,
    /// Free text that may mention people.
    FreeText,
    /// Nothing about a person.
    NonPersonal,
}

impl ColumnKind {
    pub const ALL: [ColumnKind; 5] = [
        ColumnKind::Identifier,
        ColumnKind::QuasiIdentifier,
        ColumnKind::Special,
        ColumnKind::FreeText,
        ColumnKind::NonPersonal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Identifier => "identifier",
            ColumnKind::QuasiIdentifier => "quasi-identifier",
            ColumnKind::Special => "special",
            ColumnKind::FreeText => "free-text",
            ColumnKind::NonPersonal => "non-personal",
        }
    }

    pub fn parse(s: &str) -> Option<ColumnKind> {
        ColumnKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How far a quasi-identifier is coarsened when it is generalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// A date to its year (`2024-02-08` → `2024`).
    Year,
    /// A date to its month (`2024-02-08` → `2024-02`).
    Month,
    /// A code to its first N characters (`20095` → `20`).
    Prefix(u8),
    /// A number to its band of width N (`37` → `30-39`).
    Band(u64),
}

impl Granularity {
    /// Parses `year`, `month`, `prefix:N` (1–16) or `band:N` (N ≥ 1).
    pub fn parse(s: &str) -> Result<Granularity, String> {
        let bad = || {
            format!("unknown granularity `{s}` (expected `year`, `month`, `prefix:N` or `band:N`)")
        };
        match s.split_once(':') {
            None if s == "year" => Ok(Granularity::Year),
            None if s == "month" => Ok(Granularity::Month),
            Some(("prefix", n)) => match n.parse::<u8>() {
                Ok(n @ 1..=16) => Ok(Granularity::Prefix(n)),
                _ => Err(format!("`{s}`: a prefix keeps 1 to 16 characters")),
            },
            Some(("band", n)) => match n.parse::<u64>() {
                Ok(n @ 1..) => Ok(Granularity::Band(n)),
                _ => Err(format!("`{s}`: a band is a whole number of at least 1")),
            },
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Granularity::Year => f.write_str("year"),
            Granularity::Month => f.write_str("month"),
            Granularity::Prefix(n) => write!(f, "prefix:{n}"),
            Granularity::Band(n) => write!(f, "band:{n}"),
        }
    }
}

/// One declared column or field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// The special category of a `special` column (e.g. `health`).
    pub category: Option<Category>,
    /// How the column is coarsened when a rule generalises its kind.
    pub generalise: Option<Granularity>,
}

/// A dataset's schema: every column of its files, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    /// The files' format; `None`: by each file's extension.
    pub format: Option<Format>,
    pub columns: Vec<Column>,
}

impl Schema {
    /// The format of the file at `path`: the declared one, else its extension's.
    pub fn format_of(&self, path: &str) -> Option<Format> {
        self.format.or_else(|| Format::of_path(path))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Checks a file's real column names against the declared ones, in order.
    pub fn check_header<S: AsRef<str>>(&self, found: &[S]) -> Result<(), String> {
        let found: Vec<&str> = found.iter().map(AsRef::as_ref).collect();
        let declared: Vec<&str> = self.names().collect();
        if found == declared {
            return Ok(());
        }
        let missing: Vec<&str> = declared
            .iter()
            .filter(|d| !found.contains(d))
            .copied()
            .collect();
        let extra: Vec<&str> = found
            .iter()
            .filter(|f| !declared.contains(f))
            .copied()
            .collect();
        let mut why = String::from("the file's columns do not match the schema");
        if !missing.is_empty() {
            why.push_str(&format!(
                " (declared, not in the file: `{}`)",
                missing.join("`, `")
            ));
        }
        if !extra.is_empty() {
            why.push_str(&format!(
                " (in the file, not declared: `{}`)",
                extra.join("`, `")
            ));
        }
        if missing.is_empty() && extra.is_empty() {
            why.push_str(&format!(
                " (order: the file has `{}`, the schema `{}`)",
                found.join(","),
                declared.join(",")
            ));
        }
        Err(why)
    }
}

/// The `schema:` of a catalog entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SchemaFile {
    #[serde(default)]
    format: Option<Format>,
    columns: Vec<ColumnFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    kind: ColumnKind,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    generalise: Option<String>,
}

impl SchemaFile {
    /// Validates the schema of entry `id`; every problem is pushed to `errs`.
    pub(super) fn build(&self, id: &str, errs: &mut Vec<String>) -> Option<Schema> {
        let before = errs.len();
        if self.columns.is_empty() {
            errs.push(format!("schema of `{id}` declares no columns"));
        }
        let mut columns = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            if c.name.is_empty() {
                errs.push(format!(
                    "schema of `{id}`: column {} has an empty name",
                    i + 1
                ));
            }
            if self.columns[..i].iter().any(|p| p.name == c.name) {
                errs.push(format!(
                    "schema of `{id}`: column `{}` is declared twice",
                    c.name
                ));
            }
            let category = match (&c.category, c.kind) {
                (None, _) => None,
                (Some(s), ColumnKind::Special) => {
                    match Category::ALL.iter().find(|c| c.as_str() == s) {
                        Some(&cat) if cat.is_special() || cat == Category::Criminal => Some(cat),
                        _ => {
                            errs.push(format!(
                                "schema of `{id}`: column `{}` names `{s}`, not a special category",
                                c.name
                            ));
                            None
                        }
                    }
                }
                (Some(_), _) => {
                    errs.push(format!(
                        "schema of `{id}`: column `{}` has a `category` but is not `special`",
                        c.name
                    ));
                    None
                }
            };
            let generalise = match c.generalise.as_deref().map(Granularity::parse) {
                None => None,
                Some(Ok(g)) => Some(g),
                Some(Err(m)) => {
                    errs.push(format!("schema of `{id}`: column `{}`: {m}", c.name));
                    None
                }
            };
            columns.push(Column {
                name: c.name.clone(),
                kind: c.kind,
                category,
                generalise,
            });
        }
        (errs.len() == before).then_some(Schema {
            format: self.format,
            columns,
        })
    }
}

/// The column names of a file on disk, as its format stores them.
pub fn header_of_file(path: &Path, format: Format) -> Result<Vec<String>, String> {
    let shown = path.display();
    match format {
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_path(path)
                .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
            let h = r
                .headers()
                .map_err(|e| format!("cannot read the header of `{shown}`: {e}"))?;
            Ok(h.iter().map(str::to_string).collect())
        }
        Format::Jsonl => {
            use std::io::{BufRead, Read};
            let f = std::fs::File::open(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
            let mut line = String::new();
            std::io::BufReader::new(f.take(crate::transform::MAX_RECORD as u64))
                .read_line(&mut line)
                .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
                .map_err(|e| format!("the first line of `{shown}` is not a JSON object: {e}"))?;
            Ok(v.keys().cloned().collect())
        }
        Format::Parquet => crate::transform::parquet::header_of_file(path),
    }
}

/// Most files of one entry `check` reads the header of.
pub const MAX_CHECKED_FILES: usize = 10_000;

/// Checks every file under `dir` (an entry's folder in a file store) against `schema`:
/// each must be in a format the schema reads and have exactly the declared columns.
pub fn check_dir(id: &str, schema: &Schema, dir: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut list: Vec<_> = list.flatten().map(|e| e.path()).collect();
        list.sort();
        for p in list {
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            seen += 1;
            if seen > MAX_CHECKED_FILES {
                return errs;
            }
            let name = p.to_string_lossy();
            let Some(format) = schema.format_of(&name) else {
                errs.push(format!(
                    "file `{}` of `{id}` is in no format its schema reads (declare `schema.format`, or name it .csv, .jsonl or .parquet)",
                    p.display()
                ));
                continue;
            };
            let found = match header_of_file(&p, format) {
                Ok(h) => h,
                Err(m) => {
                    errs.push(format!("schema of `{id}`: {m}"));
                    continue;
                }
            };
            let checked = match format {
                // JSON objects carry no column order: the same names suffice.
                Format::Jsonl => {
                    let mut a: Vec<&str> = found.iter().map(String::as_str).collect();
                    let mut b: Vec<&str> = schema.names().collect();
                    a.sort_unstable();
                    b.sort_unstable();
                    if a == b {
                        Ok(())
                    } else {
                        schema.check_header(&found)
                    }
                }
                _ => schema.check_header(&found),
            };
            if let Err(m) = checked {
                errs.push(format!(
                    "schema of `{id}` does not match `{}`: {m}",
                    p.display()
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn granularities_parse() {
        assert_eq!(Granularity::parse("year"), Ok(Granularity::Year));
        assert_eq!(Granularity::parse("prefix:2"), Ok(Granularity::Prefix(2)));
        assert_eq!(Granularity::parse("band:10"), Ok(Granularity::Band(10)));
        assert!(Granularity::parse("band:0").is_err());
        assert!(Granularity::parse("prefix:99").is_err());
        assert!(Granularity::parse("decade").is_err());
    }

    #[test]
    fn header_check_names_the_difference() {
        let s = Schema {
            format: None,
            columns: ["a", "b"]
                .iter()
                .map(|n| Column {
                    name: (*n).into(),
                    kind: ColumnKind::NonPersonal,
                    category: None,
                    generalise: None,
                })
                .collect(),
        };
        assert!(s.check_header(&["a", "b"]).is_ok());
        let e = s.check_header(&["a", "c"]).unwrap_err();
        assert!(e.contains("`b`") && e.contains("`c`"), "{e}");
        assert!(s.check_header(&["b", "a"]).unwrap_err().contains("order"));
    }
}
