//! The one YAML loader every file goes through (config, catalog, policies, registry,
//! policy tests): a size limit, serde-saphyr's duplicate-key and alias-bomb defences,
//! and errors turned into a [`Diagnostic`] with the line.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::Diagnostic;

/// Largest YAML file any loader accepts.
pub const MAX_YAML_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and parses one YAML file. Duplicate keys, unknown fields (with
/// `deny_unknown_fields` on the type) and alias bombs are errors that carry the line.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, Diagnostic> {
    let text = read_yaml(path)?;
    parse_yaml(path, &text)
}

/// Reads a YAML file's text, refusing files over [`MAX_YAML_BYTES`].
pub fn read_yaml(path: &Path) -> Result<String, Diagnostic> {
    let cannot = |e: std::io::Error| Diagnostic::new(path, None, format!("cannot read file: {e}"));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.len() > MAX_YAML_BYTES {
        return Err(Diagnostic::new(
            path,
            None,
            format!("file is larger than {MAX_YAML_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(cannot)
}

/// Parses YAML text that came from `path` (used for messages only).
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let msg = e.to_string();
        let line = e
            .location()
            .and_then(|l| usize::try_from(l.line()).ok())
            .filter(|l| *l > 0)
            .or_else(|| yaml_error_line(&msg));
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        Diagnostic::new(path, line, first)
    })
}

/// Finds the line number in a serde-saphyr error message (`line N` or `:N:`).
fn yaml_error_line(msg: &str) -> Option<usize> {
    let re = regex::Regex::new(r"line (\d+)|:(\d+):\d+").ok()?;
    let caps = re.captures(msg)?;
    caps.get(1)
        .or_else(|| caps.get(2))
        .and_then(|m| m.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: String,
    }

    #[test]
    fn duplicate_keys_are_refused_with_a_line() {
        let e = parse_yaml::<T>(Path::new("x.yaml"), "a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("uplicate"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused_with_a_line() {
        let e = parse_yaml::<T>(Path::new("x.yaml"), "a: 1\n\nb: 2\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
    }

    #[test]
    fn files_that_cannot_be_read_say_so() {
        let e = load_yaml::<T>(Path::new("/nonexistent/x.yaml")).unwrap_err();
        assert!(e.message.starts_with("cannot read file"), "{e}");
        assert_eq!(e.line, None);
    }
}
