//! Log segments: naming, listing in chain order, rotation and retention.

use std::path::{Path, PathBuf};

/// The name of rotated segment number `n` of the log at `active` (`audit.log` → `audit-000001.log`).
pub fn segment_name(active: &Path, n: u64) -> PathBuf {
    let stem = active
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audit".into());
    let name = match active.extension() {
        Some(ext) => format!("{stem}-{n:06}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n:06}"),
    };
    active.with_file_name(name)
}

/// The segment number of `name` if it is a rotated segment of the log at `active`.
pub fn segment_number(active: &Path, name: &str) -> Option<u64> {
    let stem = active.file_stem()?.to_str()?;
    let rest = name.strip_prefix(stem)?.strip_prefix('-')?;
    let digits = match active.extension() {
        Some(ext) => rest.strip_suffix(ext.to_str()?)?.strip_suffix('.')?,
        None => rest,
    };
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The log files in `dir`, in chain order: every `*.log` file sorted by name, which puts
/// `audit-000001.log`, `audit-000002.log`, … before the active `audit.log`.
pub fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "log") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The rotated segments of the log at `active`, oldest first, with their numbers.
pub fn rotated(active: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let dir = match active.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read `{}`: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(|n| segment_number(active, n)) {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// First seq, last seq and last hash of a segment file, read from its first line and its
/// last MiB (not the whole file).
pub fn ends(path: &Path) -> Result<(u64, u64, String), String> {
    use std::os::unix::fs::FileExt;
    let err = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
    let file = std::fs::File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let head_len = len.min(super::line::MAX_LINE as u64) as usize;
    let mut head = vec![0u8; head_len];
    file.read_exact_at(&mut head, 0).map_err(err)?;
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = super::line::read_head(first_line)
        .map_err(|e| format!("`{}`: first line: {e}", path.display()))?;
    let start = len.saturating_sub(super::line::MAX_LINE as u64);
    let mut tail = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut tail, start).map_err(err)?;
    let last_line = tail
        .strip_suffix(b"\n")
        .unwrap_or(&tail)
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let last = super::line::read_head(last_line)
        .map_err(|e| format!("`{}`: last line: {e}", path.display()))?;
    Ok((first.seq, last.seq, hex::encode(last.hash)))
}

/// Makes a directory's entries (a rename, a new or removed file) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let a = Path::new("/var/log/bg/audit.log");
        assert_eq!(
            segment_name(a, 7),
            Path::new("/var/log/bg/audit-000007.log")
        );
        assert_eq!(segment_number(a, "audit-000007.log"), Some(7));
        assert_eq!(segment_number(a, "audit-1234567.log"), Some(1234567));
        assert_eq!(segment_number(a, "audit.log"), None);
        assert_eq!(segment_number(a, "audit-0001.log"), None);
        assert_eq!(segment_number(a, "other-000001.log"), None);
    }
}
