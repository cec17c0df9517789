//! The local spool of the PostgreSQL sink (`audit.postgres.spool`): while the database
//! does not answer, a replica goes on serving by writing its records to a local file —
//! the continuation of its own chain, line for line what the database will hold, each
//! batch fdatasync'ed before its requests go on — and drains the file into the database,
//! in order, when it answers again. Lines already in the database (a crash between the
//! drain and the truncation) are recognised by seq and hash and not inserted twice.
//!
//! The file is locked for the process's lifetime: one spool, one writer.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::schema::ChainHead;
use crate::audit::line::read_head;

pub(crate) struct Spool {
    path: PathBuf,
    file: File,
    /// Where the spooled part of the chain ends; `None`: the spool is empty.
    last: Option<ChainHead>,
    /// Seq of its first line.
    first: Option<u64>,
}

impl Spool {
    /// Opens (or creates) and locks the spool at `path`, and reads where it ends.
    pub fn open(path: &Path) -> Result<Spool, String> {
        let name = path.display();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| format!("cannot open the spool `{name}`: {e}"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process uses the spool `{name}`: give every replica its own"
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock the spool `{name}`: {e}"));
            }
        }
        let mut s = Spool {
            path: path.to_path_buf(),
            file,
            last: None,
            first: None,
        };
        let mut prev: Option<ChainHead> = None;
        let mut first = None;
        s.for_each(&mut |line| {
            let h = read_head(line.as_bytes())
                .map_err(|e| format!("the spool `{name}` holds a line that is not a record: {e}"))?;
            if let Some(p) = prev
                && (h.seq != p.seq + 1 || h.prev != p.hash)
            {
                return Err(format!(
                    "the spool `{name}` does not chain at seq {}; move it aside and run `bordergate audit verify` on it",
                    h.seq
                ));
            }
            first.get_or_insert(h.seq);
            prev = Some(ChainHead {
                seq: h.seq,
                hash: h.hash,
            });
            Ok(())
        })?;
        s.first = first;
        s.last = prev;
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Where the spooled chain ends.
    pub fn last(&self) -> Option<ChainHead> {
        self.last
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.first
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines` (the next records of the chain, ending at `head`) durably.
    pub fn append(&mut self, lines: &[String], head: ChainHead) -> Result<(), String> {
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        let before = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Nothing half-written stays behind.
            let _ = self.file.set_len(before);
            return Err(format!(
                "cannot write the spool `{}`: {e}",
                self.path.display()
            ));
        }
        if self.first.is_none() {
            self.first = lines
                .first()
                .and_then(|l| read_head(l.as_bytes()).ok())
                .map(|h| h.seq);
        }
        self.last = Some(head);
        Ok(())
    }

    /// Calls `each` with every spooled line, oldest first.
    pub fn for_each(
        &mut self,
        each: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        let err =
            |e: std::io::Error| format!("cannot read the spool `{}`: {e}", self.path.display());
        let mut f = self.file.try_clone().map_err(err)?;
        f.seek(SeekFrom::Start(0)).map_err(err)?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(err)?;
            if !line.is_empty() {
                each(&line)?;
            }
        }
        Ok(())
    }

    /// Empties the spool once its lines are in the database.
    pub fn clear(&mut self) -> Result<(), String> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot empty the spool `{}`: {e}", self.path.display()))?;
        self.last = None;
        self.first = None;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::audit::line::{GENESIS, encode_line};

    fn lines(from: u64, n: u64, prev: [u8; 32]) -> (Vec<String>, ChainHead) {
        let mut prev = prev;
        let mut out = Vec::new();
        for seq in from..from + n {
            let mut buf = Vec::new();
            prev = encode_line(&mut buf, seq, &prev, br#"{"kind":"event","event":"x"}"#);
            buf.pop();
            out.push(String::from_utf8(buf).unwrap());
        }
        (
            out,
            ChainHead {
                seq: from + n - 1,
                hash: prev,
            },
        )
    }

    #[test]
    fn a_spool_keeps_its_chain_across_a_reopen_and_has_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.spool");
        let mut s = Spool::open(&path).unwrap();
        assert!(s.is_empty());
        let (a, ha) = lines(5, 3, GENESIS);
        s.append(&a, ha).unwrap();
        let (b, hb) = lines(8, 2, ha.hash);
        s.append(&b, hb).unwrap();
        // One writer per spool.
        let e = Spool::open(&path).err().unwrap();
        assert!(e.contains("another process"), "{e}");
        drop(s);
        let mut s = Spool::open(&path).unwrap();
        assert_eq!((s.first_seq(), s.last()), (Some(5), Some(hb)));
        let mut n = 0;
        s.for_each(&mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 5);
        s.clear().unwrap();
        assert!(s.is_empty());
        drop(s);
        assert!(Spool::open(&path).unwrap().is_empty());
        // A spool that does not chain is refused, with what to do.
        let (c, _) = lines(20, 1, GENESIS);
        std::fs::write(&path, format!("{}\n{}\n", a[0], c[0])).unwrap();
        let e = Spool::open(&path).err().unwrap();
        assert!(e.contains("does not chain at seq 20"), "{e}");
    }
}
