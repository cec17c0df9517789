//! CSV and JSON Lines transformed on several cores, in order: the input is cut into
//! batches at record boundaries ([`Transformer::boundary`]), each batch is transformed by
//! its own transformer on a blocking thread, and the outputs are sent in input order. At
//! most [`Batches::window`] batches are in flight, so memory stays flat.
//!
//! The cut is a guess: it is a record boundary only if the transformer of the batch
//! before it ends outside a record ([`Transformer::at_boundary`]). A batch is used only
//! when every batch before it was confirmed so; otherwise the rest of the input is fed to
//! that batch's transformer, in order, as one serial parse would read it. A batch that
//! fails is transformed again after the records before it are counted, so the error
//! names the record of the file. The output is byte for byte that of one transformer fed
//! the whole input.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::tabular::{TransformError, Transformer};

/// The first batch is small, so the header is checked and the first bytes leave soon.
pub const FIRST: usize = 64 << 10;
/// Later batches, cut at the first record boundary after this many bytes.
pub const BATCH: usize = 256 << 10;
/// Input held without a record boundary before the batches give way to one parser.
pub const UNCUT: usize = 2 * super::MAX_RECORD;

/// Why batching stopped: the transformation failed, or the output has nowhere to go.
#[derive(Debug)]
pub enum Stop {
    Failed(TransformError),
    Gone,
}

impl From<TransformError> for Stop {
    fn from(e: TransformError) -> Stop {
        Stop::Failed(e)
    }
}

/// Feeds `input` to `t`, and ends it when `last`: the output, or why it stopped.
fn run(t: &mut dyn Transformer, input: &[u8], last: bool) -> Result<Vec<u8>, TransformError> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 8);
    t.feed(input, &mut out)?;
    if last {
        t.finish(&mut out)?;
    }
    Ok(out)
}

/// One batch transformed: its transformer, and its output or why it stopped.
struct Done {
    t: Box<dyn Transformer>,
    out: Result<Vec<u8>, TransformError>,
}

fn work(mut t: Box<dyn Transformer>, input: &[u8], last: bool) -> Done {
    let out = run(&mut *t, input, last);
    Done { t, out }
}

/// `t`, counting `before` records before its own.
fn rebased(mut t: Box<dyn Transformer>, before: u64) -> Box<dyn Transformer> {
    t.rebase(before);
    t
}

struct Job {
    done: JoinHandle<Done>,
    input: Bytes,
    last: bool,
    first: bool,
}

/// Batches in flight and the order they are sent in; `send` takes each output.
pub struct Batches<S> {
    handle: tokio::runtime::Handle,
    /// The transformer of the first batch, until it is dispatched.
    first: Option<Box<dyn Transformer>>,
    /// Makes the transformers of later batches ([`Transformer::resume`]).
    template: Box<dyn Transformer>,
    jobs: VecDeque<Job>,
    window: usize,
    /// Records in the batches sent.
    records: u64,
    /// Set when one parser reads the rest (a guessed cut was no boundary).
    serial: Option<Box<dyn Transformer>>,
    pending: bytes::BytesMut,
    send: S,
    sizes: (usize, usize),
}

/// Batches in flight: one per core the process may run on (at most 8), read once (the
/// standard library reads the cgroup's quota for it). On one core there are no batches: the
/// input is transformed as it is read, by one transformer.
pub fn window() -> usize {
    static WINDOW: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WINDOW.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8)))
}

impl<S: FnMut(Vec<u8>) -> Result<(), Stop>> Batches<S> {
    pub fn new(
        t: Box<dyn Transformer>,
        window: usize,
        handle: tokio::runtime::Handle,
        send: S,
    ) -> Self {
        let template = t.resume();
        let (first, serial) = if window <= 1 {
            (None, Some(t))
        } else {
            (Some(t), None)
        };
        Batches {
            handle,
            template,
            first,
            jobs: VecDeque::new(),
            window,
            records: 0,
            serial,
            pending: bytes::BytesMut::new(),
            send,
            sizes: (FIRST, BATCH),
        }
    }

    /// Cuts the first batch after `first` bytes and the others after `batch`.
    #[cfg(test)]
    pub fn sized(mut self, first: usize, batch: usize) -> Self {
        self.sizes = (first, batch);
        self
    }

    /// Takes more input; transforms the batches it completes.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Stop> {
        if let Some(t) = &mut self.serial {
            let out = run(&mut **t, data, false)?;
            return (self.send)(out);
        }
        self.pending.extend_from_slice(data);
        loop {
            let want = if self.first.is_some() {
                self.sizes.0
            } else {
                self.sizes.1
            };
            if self.pending.len() < want {
                return Ok(());
            }
            let t = self.first.as_deref().unwrap_or(&*self.template);
            match t.boundary(&self.pending) {
                Some(cut) if cut > 0 => {
                    let batch = self.pending.split_to(cut).freeze();
                    self.dispatch(batch, false)?;
                }
                _ if self.pending.len() > UNCUT => return self.give_way(),
                _ => return Ok(()),
            }
            if self.serial.is_some() {
                let rest = self.pending.split().freeze();
                return self.feed(&rest);
            }
        }
    }

    /// The input ended: transforms what is left and sends every output.
    pub fn finish(mut self) -> Result<(), Stop> {
        if let Some(mut t) = self.serial.take() {
            let out = run(&mut *t, &[], true)?;
            return (self.send)(out);
        }
        let rest = self.pending.split().freeze();
        self.dispatch(rest, true)?;
        // The last batch is in the queue: a fall-back to one parser reads through it.
        while !self.jobs.is_empty() {
            self.settle()?;
        }
        Ok(())
    }

    fn dispatch(&mut self, input: Bytes, last: bool) -> Result<(), Stop> {
        let first = self.first.is_some();
        let t = self.first.take().unwrap_or_else(|| self.template.resume());
        let work_on = input.clone();
        let done = self.handle.spawn_blocking(move || work(t, &work_on, last));
        self.jobs.push_back(Job {
            done,
            input,
            last,
            first,
        });
        while self.jobs.len() > self.window && self.serial.is_none() {
            self.settle()?;
        }
        Ok(())
    }

    /// No boundary in sight: one parser reads the rest, after the batches in flight.
    fn give_way(&mut self) -> Result<(), Stop> {
        while self.serial.is_none() && !self.jobs.is_empty() {
            self.settle()?;
        }
        if self.serial.is_none() {
            let t = self.first.take().unwrap_or_else(|| self.template.resume());
            self.serial = Some(rebased(t, self.records));
        }
        let rest = self.pending.split().freeze();
        self.feed(&rest)
    }

    /// Sends the oldest batch's output, or falls back to one parser from it.
    fn settle(&mut self) -> Result<(), Stop> {
        let Some(job) = self.jobs.pop_front() else {
            return Ok(());
        };
        let done = self.handle.block_on(job.done).map_err(|e| {
            Stop::Failed(TransformError::Source(format!(
                "a transform worker failed: {e}"
            )))
        })?;
        let Done { mut t, out } = done;
        let out = match out {
            Ok(out) => {
                t.rebase(self.records);
                out
            }
            Err(e) if job.first => return Err(e.into()),
            Err(_) => {
                // Again, counting the records before it, for the error to name the right one.
                let again = work(
                    rebased(self.template.resume(), self.records),
                    &job.input,
                    job.last,
                );
                t = again.t;
                again.out?
            }
        };
        self.records = t.records();
        (self.send)(out)?;
        if job.last || t.at_boundary() {
            return Ok(());
        }
        // The cut after this batch was inside a record: its parser reads on, in order.
        let mut serial = t;
        for j in std::mem::take(&mut self.jobs) {
            let out = run(&mut *serial, &j.input, j.last)?;
            (self.send)(out)?;
            if j.last {
                return Ok(());
            }
        }
        self.serial = Some(serial);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::schema::{Column, ColumnKind as K, Format, Schema};
    use crate::transform::tabular::{Csv, JsonLines};
    use crate::transform::{Keyring, Method, Plan, Redactor, Requirement};

    fn plan(format: Format) -> Plan {
        let col = |name: &str, kind| Column {
            name: name.into(),
            kind,
            category: None,
            generalise: None,
        };
        let schema = Arc::new(Schema {
            format: Some(format),
            columns: vec![
                col("id", K::Identifier),
                col("note", K::FreeText),
                col("label", K::NonPersonal),
            ],
        });
        let req = Requirement {
            methods: vec![
                (K::Identifier, Method::Pseudonymise),
                (K::FreeText, Method::Redact),
            ],
        };
        let ring = Keyring::of(&[("eu", "eu-test", &[3; 32])]).unwrap();
        Plan::new(
            &req,
            Some(&schema),
            "/x",
            &ring,
            "eu",
            &Arc::new(Redactor::standard()),
        )
        .unwrap()
    }

    /// What one transformer fed everything gives.
    fn serial(mut t: Box<dyn Transformer>, input: &[u8]) -> Result<Vec<u8>, TransformError> {
        let mut out = Vec::new();
        t.feed(input, &mut out)?;
        t.finish(&mut out)?;
        Ok(out)
    }

    /// What batches of `first`/`batch` bytes give, the input fed in pieces of `step`, on a
    /// window of `window`; and how many outputs were sent.
    fn batched(
        t: Box<dyn Transformer>,
        input: &[u8],
        (first, batch, step, window): (usize, usize, usize, usize),
    ) -> (Result<Vec<u8>, TransformError>, usize) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let mut out = Vec::new();
        let mut sends = 0;
        let mut b = Batches::new(t, window, rt.handle().clone(), |o: Vec<u8>| {
            out.extend_from_slice(&o);
            sends += 1;
            Ok(())
        })
        .sized(first, batch);
        let r = input
            .chunks(step)
            .try_for_each(|c| b.feed(c))
            .and_then(|()| b.finish());
        match r {
            Ok(()) => (Ok(out), sends),
            Err(Stop::Failed(e)) => (Err(e), sends),
            Err(Stop::Gone) => panic!("gone"),
        }
    }

    fn csv(rows: usize) -> Vec<u8> {
        let mut s = String::from("id,note,label\r\n");
        for i in 0..rows {
            match i % 4 {
                0 => s.push_str(&format!("C{i},plain text {i},a\n")),
                1 => s.push_str(&format!("C{i},\"quoted, with a comma\",b\r\n")),
                2 => s.push_str(&format!(
                    "C{i},\"two\nlines and \"\"quotes\"\" mail x{i}@example.invalid\",c\n"
                )),
                _ => s.push_str(&format!("\"C{i}\",\"\n\n\",d\n")),
            }
        }
        s.into_bytes()
    }

    const SHAPES: [(usize, usize, usize, usize); 7] = [
        (10, 10, 1, 2),
        (10, 10, 5, 1),
        (10, 37, 7, 2),
        (64, 100, 33, 3),
        (1, 1, 1000, 2),
        (500, 2000, 4096, 8),
        (1 << 20, 1 << 20, 1 << 16, 2),
    ];

    #[test]
    fn csv_batches_give_the_bytes_of_one_parser() {
        let input = csv(400);
        let want = serial(Box::new(Csv::new(plan(Format::Csv))), &input).unwrap();
        for shape in SHAPES {
            let (got, sends) = batched(Box::new(Csv::new(plan(Format::Csv))), &input, shape);
            assert_eq!(
                String::from_utf8(got.unwrap()).unwrap(),
                String::from_utf8(want.clone()).unwrap(),
                "{shape:?}"
            );
            if shape.1 < 100 && shape.3 > 1 {
                assert!(
                    sends > 10,
                    "{shape:?}: {sends} sends: it was cut into batches"
                );
            }
        }
    }

    /// [`csv`] after a first record with a `"` inside an unquoted field (`5"`): every later
    /// line end looks quoted to the cut, and the quoted line ends of later records look like
    /// record ends.
    fn stray_quote(rows: usize) -> Vec<u8> {
        let mut input = b"id,note,label\nC0,5\" tall,a\n".to_vec();
        input.extend_from_slice(&csv(rows)[b"id,note,label\r\n".len()..]);
        input
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_falls_back_to_one_parser() {
        let input = stray_quote(200);
        let want = serial(Box::new(Csv::new(plan(Format::Csv))), &input).unwrap();
        for shape in SHAPES {
            let (got, _) = batched(Box::new(Csv::new(plan(Format::Csv))), &input, shape);
            assert_eq!(got.unwrap(), want, "{shape:?}");
        }
    }

    #[test]
    fn a_fall_back_at_the_end_of_what_was_read_loses_no_record() {
        // Fed a byte at a time, a cut often falls at the end of what was read, so the parser
        // that reads on after a fall-back is first given nothing: that is no end of input.
        // (Before the fix, four cores and a stray quote were enough to cut a record in two.)
        let input = stray_quote(40);
        let want = serial(Box::new(Csv::new(plan(Format::Csv))), &input).unwrap();
        for batch in 8..48 {
            let (got, _) = batched(
                Box::new(Csv::new(plan(Format::Csv))),
                &input,
                (batch, batch, 1, 4),
            );
            assert_eq!(got.unwrap(), want, "batches of {batch}");
        }
    }

    #[test]
    fn errors_name_the_record_of_the_file() {
        let mut input = csv(300);
        input.extend_from_slice(b"C300,one field too many,x,y\n");
        input.extend_from_slice(&csv(50)[b"id,note,label\r\n".len()..]);
        let want = serial(Box::new(Csv::new(plan(Format::Csv))), &input).unwrap_err();
        assert!(want.to_string().contains("record 301"), "{want}");
        for shape in SHAPES {
            let (got, _) = batched(Box::new(Csv::new(plan(Format::Csv))), &input, shape);
            assert_eq!(got.unwrap_err(), want, "{shape:?}");
        }
        // A header that is not the schema's fails before any output.
        let (got, sends) = batched(
            Box::new(Csv::new(plan(Format::Csv))),
            b"id,other,label\nC1,x,y\n",
            (1, 1, 1, 2),
        );
        assert!(
            matches!(got, Err(TransformError::SchemaMismatch(_))),
            "{got:?}"
        );
        assert_eq!(sends, 0);
        let (got, _) = batched(Box::new(Csv::new(plan(Format::Csv))), b"", (1, 1, 1, 2));
        assert!(got.unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn json_lines_batches_give_the_bytes_of_one_parser() {
        let mut input = String::new();
        for i in 0..300 {
            input.push_str(&format!(
                "{{\"id\":\"C{i}\",\"note\":\"mail x{i}@example.invalid\\nbye\",\"label\":{i}}}\n"
            ));
            if i % 50 == 0 {
                input.push('\n');
            }
        }
        let input = input.into_bytes();
        let want = serial(Box::new(JsonLines::new(plan(Format::Jsonl))), &input).unwrap();
        for shape in SHAPES {
            let (got, _) = batched(Box::new(JsonLines::new(plan(Format::Jsonl))), &input, shape);
            assert_eq!(got.unwrap(), want, "{shape:?}");
        }
        let mut bad = input.clone();
        bad.extend_from_slice(b"{\"id\":\"x\",\"secret\":1}\n");
        let want = serial(Box::new(JsonLines::new(plan(Format::Jsonl))), &bad).unwrap_err();
        for shape in SHAPES {
            let (got, _) = batched(Box::new(JsonLines::new(plan(Format::Jsonl))), &bad, shape);
            assert_eq!(got.unwrap_err(), want, "{shape:?}");
        }
    }
}
