//! Reason templates: plain-language text with `{placeholders}`, parsed once at load.

use std::fmt::Write;

/// A value a reason template can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The origin country being evaluated.
    Origin,
    /// Where the data goes.
    Destination,
    /// The importing organisation's registry id, in backticks.
    Importer,
    /// The day the decision is taken as of.
    Date,
    /// The rule's instrument (or its article when it has none).
    Instrument,
    /// The rule's article.
    Article,
    /// The transfer mechanism that was relied on.
    Mechanism,
    /// What was missing (default refusals).
    Missing,
    /// The caller's purpose.
    Purpose,
    /// The purposes permitted for the data.
    Permitted,
    /// The regime's name.
    Regime,
    /// The data's categories.
    Categories,
    /// The PIPL cumulative export volume considered, its band and the mechanism it requires.
    Volume,
}

const VARS: &[(&str, Var)] = &[
    ("origin", Var::Origin),
    ("destination", Var::Destination),
    ("importer", Var::Importer),
    ("date", Var::Date),
    ("instrument", Var::Instrument),
    ("article", Var::Article),
    ("mechanism", Var::Mechanism),
    ("missing", Var::Missing),
    ("purpose", Var::Purpose),
    ("permitted", Var::Permitted),
    ("regime", Var::Regime),
    ("categories", Var::Categories),
    ("volume", Var::Volume),
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Text(Box<str>),
    Var(Var),
}

/// A parsed reason template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    len_hint: usize,
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` are literal braces.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &s[i + 1..];
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` in reason `{s}`"))?;
                    let name = &rest[..end];
                    let var = VARS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| *v)
                        .ok_or_else(|| {
                            let known: Vec<&str> = VARS.iter().map(|(n, _)| *n).collect();
                            format!(
                                "unknown placeholder `{{{name}}}` in reason (known: {})",
                                known.join(", ")
                            )
                        })?;
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text).into()));
                    }
                    segments.push(Segment::Var(var));
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => return Err(format!("unmatched `}}` in reason `{s}`")),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text.into()));
        }
        let len_hint = s.len() + 64;
        Ok(Template { segments, len_hint })
    }

    /// True if the template names `v`.
    pub fn uses(&self, v: Var) -> bool {
        self.segments.contains(&Segment::Var(v))
    }

    /// Renders the template; `value` writes a placeholder's value.
    pub fn render(&self, mut value: impl FnMut(Var, &mut String)) -> String {
        let mut out = String::with_capacity(self.len_hint);
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(v) => value(*v, &mut out),
            }
        }
        out
    }
}

/// Writes `items` as "a, b or c" (or "and").
pub fn write_list<T: std::fmt::Display>(out: &mut String, items: &[T], conj: &str) {
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { conj } else { ", " });
        }
        let _ = write!(out, "{it}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_unknown_ones_fail() {
        let t = Template::parse("from {origin} to {destination} {{x}}").unwrap();
        let s = t.render(|v, o| o.push_str(if v == Var::Origin { "DE" } else { "US" }));
        assert_eq!(s, "from DE to US {x}");
        assert!(
            Template::parse("to {nowhere}")
                .unwrap_err()
                .contains("`{nowhere}`")
        );
        assert!(Template::parse("open {origin").is_err());
        let mut s = String::new();
        write_list(&mut s, &["a", "b", "c"], " or ");
        assert_eq!(s, "a, b or c");
    }
}
