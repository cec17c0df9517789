//! CSV and JSON Lines, transformed record by record as the bytes arrive: a push parser
//! holds at most one record ([`super::MAX_RECORD`]), so memory stays flat whatever the
//! file's size.

use serde_json::{Map, Value};

use super::{Action, Plan};

/// Why a transformation stopped; the transfer fails (nothing untransformed is sent).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransformError {
    /// The file's columns are not the schema's (checked on the header, the first line, the
    /// Parquet footer — before any byte is sent — and on every record after).
    #[error("{0}")]
    SchemaMismatch(String),
    #[error("malformed {format} at record {record}: {why}")]
    Malformed {
        format: &'static str,
        record: u64,
        why: String,
    },
    #[error("a record of more than {} bytes", super::MAX_RECORD)]
    TooLong,
    #[error("{0}")]
    Source(String),
}

/// A transformer bytes are pushed through.
pub trait Transformer: Send {
    /// Transforms what `input` completes; appends the output to `out`.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError>;
    /// The input ended: the last record, if it had no line end.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TransformError>;

    /// Where a batch taken from the front of `buf` may end for it to be transformed on its
    /// own (see [`super::batch`]): after the last line end that looks like a record's end.
    /// A guess the transformer of the batch confirms with [`Transformer::at_boundary`].
    fn boundary(&self, buf: &[u8]) -> Option<usize>;
    /// A transformer for input that continues this one's at a record boundary: the header
    /// taken as checked, no record counted.
    fn resume(&self) -> Box<dyn Transformer>;
    /// True when no part of a record is held: what was fed ended at a record's end.
    fn at_boundary(&self) -> bool;
    /// Records seen (the CSV header counts as the first).
    fn records(&self) -> u64;
    /// Counts `before` more records before this one's, so errors name the record of the file.
    fn rebase(&mut self, before: u64);
}

/// Bytes that make a CSV field need quotes.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b',' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

/// Writes one CSV field, quoted when it needs to be.
fn csv_field(v: &str, out: &mut Vec<u8>) {
    if !v.bytes().any(|b| SPECIAL[usize::from(b)]) {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    out.push(b'"');
    for b in v.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// CSV with a header line.
pub struct Csv {
    plan: Plan,
    reader: csv_core::Reader,
    fields: Vec<u8>,
    ends: Vec<usize>,
    used: usize,
    nends: usize,
    record: u64,
    header_done: bool,
    kept: Vec<usize>,
    value: String,
    scratch: super::Scratch,
}

impl Csv {
    pub fn new(plan: Plan) -> Csv {
        Csv::with(plan, csv_core::Reader::new(), false)
    }

    fn with(plan: Plan, reader: csv_core::Reader, header_done: bool) -> Csv {
        Csv {
            reader,
            fields: vec![0; 64 << 10],
            ends: vec![0; 64],
            used: 0,
            nends: 0,
            record: 0,
            header_done,
            kept: plan.kept().collect(),
            value: String::new(),
            scratch: plan.scratch(),
            plan,
        }
    }

    fn malformed(&self, why: impl Into<String>) -> TransformError {
        TransformError::Malformed {
            format: "CSV",
            record: self.record,
            why: why.into(),
        }
    }

    /// One complete record in `fields`/`ends`.
    fn record(&mut self, out: &mut Vec<u8>) -> Result<(), TransformError> {
        let n = self.nends;
        let bytes = &self.fields[..self.used];
        let text = std::str::from_utf8(bytes).map_err(|_| TransformError::Malformed {
            format: "CSV",
            record: self.record,
            why: "not UTF-8".into(),
        })?;
        let field = |i: usize, ends: &[usize]| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &text[start..ends[i]]
        };
        let ends = &self.ends[..n];
        if !self.header_done {
            let names: Vec<&str> = (0..n).map(|i| field(i, ends)).collect();
            self.plan
                .schema
                .check_header(&names)
                .map_err(TransformError::SchemaMismatch)?;
            for (j, &i) in self.kept.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                csv_field(names[i], out);
            }
            out.extend_from_slice(b"\r\n");
            self.header_done = true;
        } else {
            // A blank line is no record.
            if n == 1 && ends[0] == 0 {
                return Ok(());
            }
            if n != self.plan.actions.len() {
                return Err(TransformError::SchemaMismatch(format!(
                    "record {} has {n} fields, the schema declares {}",
                    self.record,
                    self.plan.actions.len()
                )));
            }
            for (j, &i) in self.kept.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                let v = field(i, ends);
                let action = self.plan.actions[i];
                if action == Action::Keep {
                    csv_field(v, out);
                    continue;
                }
                self.value.clear();
                self.plan.value(i, v, &mut self.value, &mut self.scratch);
                if action == Action::Pseudonymise {
                    // `p-` and hex digits: nothing to quote.
                    out.extend_from_slice(self.value.as_bytes());
                } else {
                    csv_field(&self.value, out);
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        self.record += 1;
        Ok(())
    }

    /// Reads `input`; `end`: the input ended. `csv_core` takes an empty input for the end
    /// of the file, so it is given one only then (a body may send an empty piece, and that
    /// must not end the record it is in).
    fn run(
        &mut self,
        mut input: &[u8],
        end: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), TransformError> {
        use csv_core::ReadRecordResult as R;
        loop {
            if input.is_empty() && !end {
                return Ok(());
            }
            let (res, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.fields[self.used..],
                &mut self.ends[self.nends..],
            );
            input = &input[nin..];
            self.used += nout;
            self.nends += nend;
            match res {
                R::InputEmpty => return Ok(()),
                R::OutputFull => {
                    if self.fields.len() >= super::MAX_RECORD {
                        return Err(TransformError::TooLong);
                    }
                    let len = (self.fields.len() * 2).min(super::MAX_RECORD);
                    self.fields.resize(len, 0);
                }
                R::OutputEndsFull => {
                    if self.ends.len() >= 1 << 16 {
                        return Err(self.malformed("more than 65536 fields"));
                    }
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                R::Record => {
                    self.record(out)?;
                    self.used = 0;
                    self.nends = 0;
                }
                R::End => return Ok(()),
            }
        }
    }
}

impl Transformer for Csv {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        self.run(input, false, out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TransformError> {
        self.run(&[], true, out)?;
        if !self.header_done {
            return Err(TransformError::SchemaMismatch(
                "the file is empty: it has no header".into(),
            ));
        }
        Ok(())
    }

    fn boundary(&self, buf: &[u8]) -> Option<usize> {
        csv_boundary(buf)
    }

    fn resume(&self) -> Box<dyn Transformer> {
        Box::new(Csv::with(self.plan.clone(), csv_core::Reader::new(), true))
    }

    fn at_boundary(&self) -> bool {
        self.used == 0 && self.nends == 0
    }

    fn records(&self) -> u64 {
        self.record
    }

    fn rebase(&mut self, before: u64) {
        self.record += before;
    }
}

/// The end of the last line of `buf` outside quotes (an even number of `"` before it):
/// where a record ends in RFC 4180 CSV. A file with a `"` inside an unquoted field can make
/// this a line end inside a quoted field; the batch's parser then ends inside a record
/// ([`Transformer::at_boundary`] is false) and the rest of the file is read by one parser.
fn csv_boundary(buf: &[u8]) -> Option<usize> {
    let mut quotes = memchr::memchr_iter(b'"', buf).count();
    let mut end = buf.len();
    while let Some(nl) = memchr::memrchr(b'\n', &buf[..end]) {
        quotes -= memchr::memchr_iter(b'"', &buf[nl..end]).count();
        if quotes.is_multiple_of(2) {
            return Some(nl + 1);
        }
        end = nl;
    }
    None
}

/// JSON Lines: one object per line.
pub struct JsonLines {
    plan: Plan,
    line: Vec<u8>,
    record: u64,
    value: String,
    scratch: super::Scratch,
}

impl JsonLines {
    pub fn new(plan: Plan) -> JsonLines {
        JsonLines {
            scratch: plan.scratch(),
            plan,
            line: Vec::new(),
            record: 0,
            value: String::new(),
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let malformed = |why: String| TransformError::Malformed {
            format: "JSON Lines",
            record: self.record,
            why,
        };
        let obj: Map<String, Value> =
            serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
        let mut kept = Map::new();
        for (k, v) in obj {
            let Some(i) = self.plan.schema.columns.iter().position(|c| c.name == k) else {
                return Err(TransformError::SchemaMismatch(format!(
                    "record {} has field `{k}`, which the schema does not declare",
                    self.record
                )));
            };
            let v = match (self.plan.actions[i], v) {
                (Action::Drop, _) => continue,
                (Action::Keep, v) | (_, v @ Value::Null) => v,
                (_, Value::String(s)) => {
                    self.value.clear();
                    self.plan.value(i, &s, &mut self.value, &mut self.scratch);
                    Value::String(self.value.clone())
                }
                (_, other) => {
                    let s = other.to_string();
                    self.value.clear();
                    self.plan.value(i, &s, &mut self.value, &mut self.scratch);
                    Value::String(self.value.clone())
                }
            };
            kept.insert(k, v);
        }
        serde_json::to_writer(&mut *out, &kept).map_err(|e| malformed(e.to_string()))?;
        out.push(b'\n');
        self.record += 1;
        Ok(())
    }
}

impl Transformer for JsonLines {
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError> {
        while let Some(nl) = memchr::memchr(b'\n', input) {
            if self.line.is_empty() {
                self.line(&input[..nl], out)?;
            } else {
                self.line.extend_from_slice(&input[..nl]);
                let line = std::mem::take(&mut self.line);
                self.line(&line, out)?;
            }
            input = &input[nl + 1..];
        }
        if self.line.len() + input.len() > super::MAX_RECORD {
            return Err(TransformError::TooLong);
        }
        self.line.extend_from_slice(input);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TransformError> {
        let line = std::mem::take(&mut self.line);
        self.line(&line, out)
    }

    fn boundary(&self, buf: &[u8]) -> Option<usize> {
        memchr::memrchr(b'\n', buf).map(|nl| nl + 1)
    }

    fn resume(&self) -> Box<dyn Transformer> {
        Box::new(JsonLines::new(self.plan.clone()))
    }

    fn at_boundary(&self) -> bool {
        self.line.is_empty()
    }

    fn records(&self) -> u64 {
        self.record
    }

    fn rebase(&mut self, before: u64) {
        self.record += before;
    }
}

/// The transformer of a CSV or JSON Lines plan (Parquet is read by row group, see
/// [`super::parquet`]).
pub fn for_plan(plan: Plan) -> Option<Box<dyn Transformer>> {
    match plan.format {
        crate::catalog::schema::Format::Csv => Some(Box::new(Csv::new(plan))),
        crate::catalog::schema::Format::Jsonl => Some(Box::new(JsonLines::new(plan))),
        crate::catalog::schema::Format::Parquet => None,
    }
}
