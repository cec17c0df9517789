//! Repairing a forked or damaged log without losing evidence: the damaged file is sealed
//! (renamed `<log>.damaged-<time>`, never deleted or changed) and a new segment starts whose
//! first record, a `repair` event, names the sealed file, the last record that chained
//! correctly and the damage found. `audit verify` then reports the break as a recorded
//! repair, and the gateway continues the chain from the repair record.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::head::{self, Head, HeadFile};
use super::line::{GENESIS, HASH_LEN, encode_line};
use super::record::RepairRecord;
use super::segments;
use super::verify::{LogReport, VerifyOptions, verify_log};

/// What a repair did.
#[derive(Debug)]
pub enum Repair {
    /// The log verifies: nothing was changed.
    Intact(Box<LogReport>),
    /// The damaged log was sealed and a new segment started.
    Sealed {
        sealed: PathBuf,
        /// The last record that chained correctly (0: none).
        last_good_seq: u64,
        damage: Vec<String>,
        /// Sequence number of the repair record.
        seq: u64,
    },
}

/// The file name the damaged log at `log` is sealed under at `stamp` (`20261203T140501Z`).
fn sealed_name(log: &Path, stamp: &str) -> PathBuf {
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit.log".into());
    let mut n = 0;
    loop {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let p = log.with_file_name(format!("{name}.damaged-{stamp}{suffix}"));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

fn stamp(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Repairs the log whose active file is `log` (its rotated segments are checked with it):
/// refused while a gateway writes it (holds its lock) and when the damage lies in a rotated
/// segment rather than the active file. `by` names who repairs.
pub fn repair(log: &Path, by: &str) -> Result<Repair, String> {
    if !log.is_file() {
        return Err(format!("`{}` is not an audit log file", log.display()));
    }
    let head_path = head::path_for(log);
    let old_head = std::fs::read(&head_path).ok();
    let (lock, _) = HeadFile::lock(&head_path).map_err(|e| {
        if e.contains("another process") {
            format!(
                "a gateway is writing `{}` (it holds the lock on `{}`): stop it before repairing its log",
                log.display(),
                head_path.display()
            )
        } else {
            e
        }
    })?;
    let mut files: Vec<PathBuf> = segments::rotated(log)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    files.push(log.to_path_buf());
    let rep = verify_log(&files, &VerifyOptions::default());
    if rep.is_ok() {
        // The lock rewrote nothing yet; keep the head as it was.
        if let Some(b) = &old_head {
            let _ = std::fs::write(&head_path, b);
        }
        return Ok(Repair::Intact(Box::new(rep)));
    }
    let active = log.display().to_string();
    if let Some(d) = rep.damage.iter().find(|d| d.file != active) {
        if let Some(b) = &old_head {
            let _ = std::fs::write(&head_path, b);
        }
        return Err(format!(
            "the damage is in the rotated segment `{}`, not in the active log: {d}; `audit repair` seals the active log only",
            d.file
        ));
    }
    let (last_good_seq, prev) = match (rep.last_seq, rep.last_hash.as_deref()) {
        (Some(s), Some(h)) => {
            let mut p = [0u8; HASH_LEN];
            hex::decode_to_slice(h, &mut p).map_err(|e| format!("bad hash `{h}`: {e}"))?;
            (s, p)
        }
        _ => (0, GENESIS),
    };
    let damage: Vec<String> = rep.damage.iter().map(ToString::to_string).collect();
    let now = time::OffsetDateTime::now_utc();
    let sealed = sealed_name(log, &stamp(now));
    let sealed_file = sealed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = log.parent().map(PathBuf::from).unwrap_or_default();
    std::fs::rename(log, &sealed).map_err(|e| {
        format!(
            "cannot seal `{}` as `{}`: {e}",
            log.display(),
            sealed.display()
        )
    })?;
    // The head file as the damaged log left it, kept with it.
    if let Some(b) = old_head.filter(|b| !b.is_empty()) {
        let mut p = sealed.as_os_str().to_owned();
        p.push(".head");
        std::fs::write(&p, b).map_err(|e| format!("cannot keep the head file: {e}"))?;
    }
    let record = RepairRecord {
        kind: "event".into(),
        time: super::record::now_rfc3339(),
        event: "repair".into(),
        detail: format!(
            "the damaged log was sealed as `{sealed_file}`; the chain continues from seq {last_good_seq}, the last record that chained correctly"
        ),
        sealed: sealed_file,
        last_good_seq,
        last_good_hash: hex::encode(prev),
        damage: damage.clone(),
        by: by.to_owned(),
    };
    let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    let seq = last_good_seq + 1;
    let mut line = Vec::new();
    let hash = encode_line(&mut line, seq, &prev, &json);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(log)?;
        f.write_all(&line)?;
        f.sync_all()?;
        segments::sync_dir(&dir)
    };
    write().map_err(|e| format!("cannot start the new segment `{}`: {e}", log.display()))?;
    lock.write(&Head { seq, hash })
        .and_then(|()| lock.sync())
        .map_err(|e| format!("cannot write `{}`: {e}", head_path.display()))?;
    Ok(Repair::Sealed {
        sealed,
        last_good_seq,
        damage,
        seq,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_log_is_sealed_and_continued_and_then_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let mut lines = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=3 {
            prev = encode_line(
                &mut lines,
                seq,
                &prev,
                br#"{"kind":"event","time":"2026-01-01T00:00:00Z","event":"x","detail":""}"#,
            );
        }
        lines.extend_from_slice(b"{\"kind\":\"event\",\"event\":\"forged\"}\n");
        std::fs::write(&log, &lines).unwrap();
        assert!(!verify_log(std::slice::from_ref(&log), &VerifyOptions::default()).is_ok());

        let Repair::Sealed {
            sealed,
            last_good_seq,
            seq,
            ..
        } = repair(&log, "ops").unwrap()
        else {
            panic!("not repaired");
        };
        assert_eq!((last_good_seq, seq), (3, 4));
        assert_eq!(
            std::fs::read(&sealed).unwrap(),
            lines,
            "the evidence is kept"
        );
        let rep = verify_log(std::slice::from_ref(&log), &VerifyOptions::default());
        assert!(rep.is_ok(), "{rep}");
        assert_eq!(rep.repairs.len(), 1);
        assert!(rep.to_string().contains("recorded repair"), "{rep}");
        assert!(matches!(repair(&log, "ops").unwrap(), Repair::Intact(_)));
    }

    #[test]
    fn a_locked_log_is_not_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        std::fs::write(&log, b"garbage\n").unwrap();
        let _held = HeadFile::lock(&head::path_for(&log)).unwrap();
        let e = repair(&log, "ops").unwrap_err();
        assert!(e.contains("stop it before repairing"), "{e}");
        assert_eq!(std::fs::read(&log).unwrap(), b"garbage\n");
    }
}
