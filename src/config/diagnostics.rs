//! Problems found while loading files: one [`Diagnostic`] per problem with its file and
//! line, [`Diagnostics`] for all of them, and [`FileDiagnostics`], which collects the
//! problems of one file and finds their lines by key path.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Lines;

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

/// Collects the problems of one file, each placed on the line of the key path it is
/// about (or of the nearest enclosing key the file has).
pub struct FileDiagnostics<'a> {
    file: &'a Path,
    lines: &'a Lines,
    found: Vec<Diagnostic>,
}

impl<'a> FileDiagnostics<'a> {
    pub fn new(file: &'a Path, lines: &'a Lines) -> Self {
        FileDiagnostics {
            file,
            lines,
            found: Vec::new(),
        }
    }

    /// Records a problem about the key path `key` (`routes[1].upstream`, see [`Lines`]).
    pub fn at(&mut self, key: &str, message: impl Into<String>) {
        let line = self.lines.near(key);
        self.at_line(line, message);
    }

    /// Records a problem on a known line, or on the file as a whole.
    pub fn at_line(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.found
            .push(Diagnostic::new(self.file, line, message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems found, in the order they were recorded.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.found
    }

    /// `Ok` if nothing was found, else every problem.
    pub fn finish(self) -> Result<(), Diagnostics> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(self.found))
        }
    }
}

/// The candidate closest to a misspelt `name`, if one is close enough to be what was
/// meant: for ``unknown upstream `eu-stor`; did you mean `eu-store`?``.
pub fn did_you_mean<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let (best, distance) = candidates
        .into_iter()
        .map(|c| (c, strsim::damerau_levenshtein(name, c)))
        .min_by_key(|(_, d)| *d)?;
    // A third of the name may be wrong, at least one letter, at most three.
    let allowed = (name.chars().count() / 3).clamp(1, 3);
    (distance > 0 && distance <= allowed).then_some(best)
}

/// `; did you mean `x`?` when a candidate is close to `name`, else nothing.
pub fn suggestion<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    did_you_mean(name, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

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

    #[test]
    fn a_file_collects_problems_on_the_lines_of_their_keys() {
        let lines = Lines::parse("a:\n  b: 1\nc: [x, y]\n");
        let mut out = FileDiagnostics::new(Path::new("f.yaml"), &lines);
        assert!(out.is_empty());
        out.at("a.b", "one");
        out.at("c[1]", "two");
        out.at("a.missing", "three");
        out.at("nowhere", "four");
        let got: Vec<_> = out.into_vec().iter().map(|d| d.line).collect();
        assert_eq!(got, [Some(2), Some(3), Some(1), None]);
        let none = FileDiagnostics::new(Path::new("f.yaml"), &lines);
        assert!(none.finish().is_ok());
    }

    #[test]
    fn suggests_only_close_names() {
        let names = ["eu-store", "us-store", "archive"];
        assert_eq!(did_you_mean("eu-stor", names), Some("eu-store"));
        assert_eq!(did_you_mean("eu-sotre", names), Some("eu-store"));
        assert_eq!(did_you_mean("archiv", names), Some("archive"));
        assert_eq!(did_you_mean("cdn", names), None);
        assert_eq!(did_you_mean("eu-store", names), None);
        assert_eq!(did_you_mean("x", []), None);
        assert_eq!(suggestion("archve", names), "; did you mean `archive`?");
        assert_eq!(suggestion("zzz", names), "");
    }
}
