//! The head file beside a log file (`<log>.head`): the sequence number and hash of the last
//! durable record, rewritten in place after every batch. It makes a log that was cut,
//! emptied or replaced between runs detectable by default — at start-up (the gateway
//! refuses to continue such a log) and by `audit verify` — even without a checkpoint key.
//!
//! It is evidence against accidents and careless tampering only: whoever can rewrite the
//! log can rewrite this file too. Signed checkpoints exported off the host, and receipts
//! kept by clients, are what hold against a deliberate one.
//!
//! The writer holds an exclusive lock (`flock`) on the head file for the log's lifetime, so
//! a second gateway pointed at the same log is refused before it reads or writes a byte
//! of it; the head file's path does not change when the log rotates, so the one lock
//! covers the active log and every segment rotated beside it for the gateway's lifetime.
//! `bordergate audit repair` takes the same lock, so a log is never repaired under a
//! running gateway.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::line::HASH_LEN;

/// The fixed line the file holds: `bordergate-head v1 seq=<20 digits> hash=<64 hex> sum=<16 hex>\n`.
const LEN: usize = "bordergate-head v1 seq= hash= sum=\n".len() + 20 + 64 + 16;

/// The last durable record a head file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; HASH_LEN],
}

/// The head file of the log at `log`.
pub fn path_for(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

fn checksum(body: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    hex::encode(&d.as_ref()[..8])
}

fn encode(h: &Head) -> Vec<u8> {
    let body = format!(
        "bordergate-head v1 seq={:020} hash={}",
        h.seq,
        hex::encode(h.hash)
    );
    let sum = checksum(&body);
    format!("{body} sum={sum}\n").into_bytes()
}

fn decode(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    let (body, sum) = text.rsplit_once(" sum=")?;
    if checksum(body) != sum {
        return None;
    }
    let rest = body.strip_prefix("bordergate-head v1 seq=")?;
    let (seq, hash) = rest.split_once(" hash=")?;
    let mut h = [0u8; HASH_LEN];
    hex::decode_to_slice(hash, &mut h).ok()?;
    Some(Head {
        seq: seq.parse().ok()?,
        hash: h,
    })
}

/// Reads a head file: `Ok(None)` when there is none, `Err` when it cannot be read or is
/// not a head file (a torn write after a power loss reads as the latter).
pub fn read(path: &Path) -> Result<Option<Head>, String> {
    match std::fs::read(path) {
        Ok(b) => decode(&b)
            .map(Some)
            .ok_or_else(|| format!("`{}` is not a readable head file", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
    }
}

/// The open, locked head file the writer rewrites.
#[derive(Debug)]
pub struct HeadFile {
    file: File,
}

impl HeadFile {
    /// Opens (or creates) the head file of a log and takes its exclusive lock; returns the
    /// head it named (`None`: new, or unreadable — see [`read`]). Fails when another
    /// process holds the lock: another gateway writes this log.
    pub fn lock(path: &Path) -> Result<(HeadFile, Result<Option<Head>, String>), String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another process is writing this audit log (it holds the lock on `{}`); one log has one writer: give this gateway a log of its own",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock `{}`: {e}", path.display()));
            }
        }
        let mut bytes = Vec::with_capacity(LEN);
        let recorded = match std::io::Read::read_to_end(&mut &file, &mut bytes) {
            Ok(0) => Ok(None),
            Ok(_) => decode(&bytes)
                .map(Some)
                .ok_or_else(|| format!("`{}` is not a readable head file", path.display())),
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        };
        if bytes.len() != LEN {
            // Whatever it held, the first write makes it exactly one head line.
            file.set_len(0)
                .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        }
        Ok((HeadFile { file }, recorded))
    }

    /// Rewrites the head in place (one write, no fsync: the log's own fdatasync made the
    /// records durable; a head that lags after a crash is behind, never ahead).
    pub fn write(&self, h: &Head) -> io::Result<()> {
        let b = encode(h);
        debug_assert_eq!(b.len(), LEN);
        self.file.write_all_at(&b, 0)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Checks where a log's chain ends (`last`: seq and hash of its last record; `None` for an
/// empty or missing log) against its head file; `Err` names what was removed. With
/// `same_record`, a log that ends at the head's seq with another record is refused too
/// (start-up does; `audit verify` leaves rewritten records to the checkpoint signatures,
/// which prove them, and reports only what is missing).
pub fn check(
    last: Option<Head>,
    head: Option<Head>,
    name: &str,
    same_record: bool,
) -> Result<(), String> {
    let Some(h) = head else {
        return Ok(());
    };
    let ends = last.map_or(0, |l| l.seq);
    if ends < h.seq {
        return Err(format!(
            "`{name}` ends at seq {ends}, but its head file says seq {} was written: records were removed (the log was cut, emptied or replaced). The damaged log is kept as it is",
            h.seq
        ));
    }
    if let Some(l) = last
        && same_record
        && l.seq == h.seq
        && l.hash != h.hash
    {
        return Err(format!(
            "`{name}` ends at seq {} with another record than its head file names: the log was replaced or rewritten",
            l.seq
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_a_torn_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log.head");
        assert_eq!(read(&p).unwrap(), None);
        let (f, before) = HeadFile::lock(&p).unwrap();
        assert_eq!(before, Ok(None));
        assert!(HeadFile::lock(&p).unwrap_err().contains("another process"));
        let h = Head {
            seq: 42,
            hash: [7; HASH_LEN],
        };
        f.write(&h).unwrap();
        f.write(&Head { seq: 43, ..h }).unwrap();
        assert_eq!(read(&p).unwrap(), Some(Head { seq: 43, ..h }));
        let mut b = std::fs::read(&p).unwrap();
        b[30] ^= 1;
        std::fs::write(&p, &b).unwrap();
        assert!(read(&p).is_err());
    }

    #[test]
    fn a_log_behind_its_head_is_named_cut() {
        let h = Head {
            seq: 10,
            hash: [1; HASH_LEN],
        };
        check(Some(h), Some(h), "l", true).unwrap();
        check(Some(Head { seq: 12, ..h }), Some(h), "l", true).unwrap();
        check(None, None, "l", true).unwrap();
        let e = check(None, Some(h), "l", true).unwrap_err();
        assert!(e.contains("ends at seq 0") && e.contains("seq 10"), "{e}");
        let e = check(Some(Head { seq: 9, ..h }), Some(h), "l", false).unwrap_err();
        assert!(e.contains("records were removed"), "{e}");
        let other = Head {
            seq: 10,
            hash: [2; HASH_LEN],
        };
        assert!(
            check(Some(other), Some(h), "l", true)
                .unwrap_err()
                .contains("replaced")
        );
        check(Some(other), Some(h), "l", false).unwrap();
    }
}
