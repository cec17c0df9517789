//! Where each key of a YAML file is: a second, schema-free parse of the same text into
//! a tree of spanned nodes, flattened into key path → line (`upstreams[2].url` → 14).
//!
//! The typed model stays free of span wrappers; validation and the code that builds the
//! running state look lines up here when they report a problem.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The line of every key path of one YAML document. Paths join mapping keys with `.`
/// and give sequence items as `[i]`: `routes[0].upstream`, `auth.keys[1].alg`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines(HashMap<String, usize>);

impl Lines {
    /// Records the lines of `text`; empty if it is not YAML (the typed parse reports that).
    pub fn parse(text: &str) -> Lines {
        let mut lines = HashMap::new();
        if let Ok(root) = serde_saphyr::from_str::<Node>(text) {
            flatten(&root, &mut String::new(), &mut lines);
        }
        Lines(lines)
    }

    /// The line of exactly this key path, if the file has it.
    pub fn of(&self, path: &str) -> Option<usize> {
        self.0.get(path).copied()
    }

    /// The line of this key path or, when the file leaves it out (a default, a missing
    /// field), of its nearest ancestor that is there: `admin.tls.client_ca` falls back to
    /// `admin.tls`, then `admin`.
    pub fn near(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.of(p) {
                return Some(l);
            }
            p = parent(p)?;
        }
    }

    /// How many key paths were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → none.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// The 1-based line a span starts on, if known.
pub fn line_of<T>(s: &Spanned<T>) -> Option<usize> {
    usize::try_from(s.referenced.line()).ok().filter(|l| *l > 0)
}

fn flatten(node: &Node, path: &mut String, out: &mut HashMap<String, usize>) {
    let len = path.len();
    match node {
        Node::Map(entries) => {
            for (key, value) in entries {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.value.0);
                // A key's own line: a block mapping value starts on the lines below it.
                if let Some(l) = line_of(key).or_else(|| line_of(value)) {
                    out.entry(path.clone()).or_insert(l);
                }
                flatten(&value.value, path, out);
                path.truncate(len);
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                if let Some(l) = line_of(item) {
                    out.entry(path.clone()).or_insert(l);
                }
                flatten(&item.value, path, out);
                path.truncate(len);
            }
        }
        Node::Scalar => {}
    }
}

/// Any YAML node, keeping only its structure and the positions of its parts.
enum Node {
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping key as text (config keys are strings; other scalars are kept as written).
struct Key(String);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Key>>()? {
            entries.push((k, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        // As text, the way the typed parse matches field names (`y` is a key, not `true`).
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_owned()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Key, E> {
        Ok(Key(String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen:
  address: 127.0.0.1:8080
  plaintext: true
upstreams:
  - name: a
    url: http://a
  - name: b

    url: http://b
    follow_redirects_to: [\"https://x\", \"https://y\"]
routes:
  - {prefix: /a, upstream: a}
  -
    prefix: /b
";

    #[test]
    fn every_key_path_has_its_line() {
        let l = Lines::parse(TEXT);
        assert_eq!(l.of("listen"), Some(1));
        assert_eq!(l.of("listen.address"), Some(2));
        assert_eq!(l.of("listen.plaintext"), Some(3));
        assert_eq!(l.of("upstreams"), Some(4));
        assert_eq!(l.of("upstreams[0]"), Some(5));
        assert_eq!(l.of("upstreams[0].url"), Some(6));
        assert_eq!(l.of("upstreams[1]"), Some(7));
        assert_eq!(l.of("upstreams[1].url"), Some(9));
        assert_eq!(l.of("upstreams[1].follow_redirects_to[1]"), Some(10));
        assert_eq!(l.of("routes[0].upstream"), Some(12));
        assert_eq!(l.of("routes[1].prefix"), Some(14));
        assert_eq!(l.of("routes[2]"), None);
    }

    #[test]
    fn a_missing_key_falls_back_to_its_nearest_ancestor() {
        let l = Lines::parse(TEXT);
        assert_eq!(l.near("upstreams[1].s3.region"), Some(7));
        assert_eq!(l.near("listen.tls"), Some(1));
        assert_eq!(l.near("admin.address"), None);
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), None);
    }

    #[test]
    fn not_yaml_gives_no_lines() {
        assert!(Lines::parse("a: [").is_empty());
        assert!(Lines::parse("").is_empty());
    }

    #[test]
    fn aliases_report_where_they_are_used() {
        let l = Lines::parse("base: &b\n  x: 1\nother:\n  y: *b\n");
        assert_eq!(l.of("other.y"), Some(4));
        assert_eq!(l.of("base.x"), Some(2));
    }
}
