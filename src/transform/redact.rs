//! Redaction of free text: configured patterns (`transform.redact` in the gateway config;
//! e-mail addresses, phone numbers and IBANs by default) replaced by `[redacted]`.

use serde::Deserialize;

/// What a match is replaced by.
pub const REPLACEMENT: &str = "[redacted]";

/// Largest compiled size of the redaction patterns.
const SIZE_LIMIT: usize = 4 << 20;

/// A named pattern, as configured.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub name: String,
    pub pattern: String,
}

/// The patterns used when the config names none.
pub fn default_patterns() -> Vec<Pattern> {
    [
        ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
        ("phone", r"\+?[0-9][0-9 ()/-]{6,}[0-9]"),
        (
            "iban",
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        ),
    ]
    .into_iter()
    .map(|(n, p)| Pattern {
        name: n.into(),
        pattern: p.into(),
    })
    .collect()
}

/// The compiled patterns, matched in one pass.
#[derive(Debug)]
pub struct Redactor {
    names: Vec<String>,
    re: Option<regex::Regex>,
}

impl Redactor {
    pub fn new(patterns: &[Pattern]) -> Result<Redactor, String> {
        for p in patterns {
            regex::RegexBuilder::new(&p.pattern)
                .size_limit(SIZE_LIMIT)
                .build()
                .map_err(|e| format!("redaction pattern `{}` does not compile: {e}", p.name))?;
        }
        let re = if patterns.is_empty() {
            None
        } else {
            let joined = patterns
                .iter()
                .map(|p| format!("(?:{})", p.pattern))
                .collect::<Vec<_>>()
                .join("|");
            Some(
                regex::RegexBuilder::new(&joined)
                    .size_limit(SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("redaction patterns do not compile together: {e}"))?,
            )
        };
        Ok(Redactor {
            names: patterns.iter().map(|p| p.name.clone()).collect(),
            re,
        })
    }

    /// The default patterns.
    pub fn standard() -> Redactor {
        Redactor::new(&default_patterns()).unwrap_or(Redactor {
            names: Vec::new(),
            re: None,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Appends `text` with every match replaced to `out`.
    pub fn redact_into(&self, text: &str, out: &mut String) {
        let Some(re) = &self.re else {
            out.push_str(text);
            return;
        };
        let mut last = 0;
        for m in re.find_iter(text) {
            out.push_str(&text[last..m.start()]);
            out.push_str(REPLACEMENT);
            last = m.end();
        }
        out.push_str(&text[last..]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn standard_patterns_redact_contacts() {
        let r = Redactor::standard();
        let mut out = String::new();
        r.redact_into(
            "Write to mocky.fiktiv@example.invalid or call +49 40 1234567, IBAN DE89 3704 0044 0532 0130 00. Thanks",
            &mut out,
        );
        assert!(!out.contains("mocky"), "{out}");
        assert!(!out.contains("1234567"), "{out}");
        assert!(!out.contains("3704"), "{out}");
        assert!(out.ends_with("Thanks"), "{out}");
        assert!(
            Redactor::new(&[Pattern {
                name: "x".into(),
                pattern: "(".into()
            }])
            .is_err()
        );
    }
}
