//! The files below a directory of the store, for the S3 API's listings: regular files
//! only, with the same exclusions as reads (hidden components, and symlinks, which a
//! listing does not follow), each with the validators a GET of it would carry.

use std::path::Path;

use super::{FileStore, Validators};
use crate::s3::list::Object;

/// Most files one listing walks; a larger tree is refused rather than listed in part.
pub const MAX_WALKED: usize = 100_000;

fn iso8601(t: std::time::SystemTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(t).format(f).unwrap_or_default()
}

fn walk(dir: &Path, path: &str, out: &mut Vec<(String, Object)>) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read a store directory: {e}")),
    };
    for e in entries {
        let e = e.map_err(|e| format!("cannot read a store directory: {e}"))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let ft = e
            .file_type()
            .map_err(|e| format!("cannot stat a store file: {e}"))?;
        let child = format!("{path}/{name}");
        if ft.is_dir() {
            walk(&e.path(), &child, out)?;
        } else if ft.is_file() {
            if out.len() == MAX_WALKED {
                return Err(format!(
                    "more than {MAX_WALKED} files below the listed directory"
                ));
            }
            let md = e
                .metadata()
                .map_err(|e| format!("cannot stat a store file: {e}"))?;
            let v = Validators::of(&md);
            let modified = md.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((
                child,
                Object {
                    key: String::new(),
                    size: v.len,
                    last_modified: iso8601(modified),
                    etag: v.etag,
                },
            ));
        }
    }
    Ok(())
}

impl FileStore {
    /// The regular files below `dir` (a decoded, normalised path without a trailing `/`),
    /// as (path, object without its key), in no particular order.
    pub async fn files_under(&self, dir: &str) -> Result<Vec<(String, Object)>, String> {
        let Some(parts) = super::components(dir).or_else(|| dir.is_empty().then(Vec::new)) else {
            return Ok(Vec::new());
        };
        let mut start = self.root.clone();
        start.extend(parts);
        let dir = dir.to_string();
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            // The start must be a directory of the store, not a link out of it.
            match std::fs::canonicalize(&start) {
                Ok(real) if real.is_dir() && (real == store.root || store.contains(&real)) => {
                    walk(&real, &dir, &mut out).map(|()| out)
                }
                _ => Ok(out),
            }
        })
        .await
        .map_err(|e| format!("the store walk failed: {e}"))?
    }
}
