//! Problems found while loading files: one [`Diagnostic`] per problem with its file and
//! line, [`Diagnostics`] for all of them.

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading files, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// All the problems found in a set of files.
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_file_and_line() {
        let d = Diagnostic::new("g.yaml", Some(14), "unknown upstream `x`");
        assert_eq!(d.to_string(), "g.yaml:14: unknown upstream `x`");
        let d = Diagnostic::new("g.yaml", None, "cannot read file");
        assert_eq!(d.to_string(), "g.yaml: cannot read file");
        let all = Diagnostics(vec![d.clone(), d]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
