//! The test that keeps `docs/configuration.md` complete: every field the config's serde
//! model accepts, found by asking the model itself (a probe key in each section is refused
//! with the list of the section's fields), must be named in the doc as `` `path` ``.

use super::parse_yaml;

const PROBE: &str = "zzz_probe";

/// The fields serde lists when it refuses the probe key, if it refused it as unknown.
fn fields_in(message: &str) -> Option<Vec<String>> {
    let at = message.find(&format!("unknown field `{PROBE}`"))?;
    let rest = &message[at..];
    let list = rest.split_once("expected ")?.1;
    let list = list.strip_prefix("one of ").unwrap_or(list);
    Some(
        list.split(", ")
            .flat_map(|p| p.split(" or "))
            .map(|f| f.trim().trim_matches('`').to_owned())
            .filter(|f| !f.is_empty())
            .collect(),
    )
}

/// The YAML (flow style) that puts the probe at `path` (`[]` steps into a list item).
fn document(path: &[String]) -> String {
    let mut doc = format!("{{{PROBE}: 1}}");
    for step in path.iter().rev() {
        doc = match step.strip_suffix("[]") {
            Some(name) => format!("{{{name}: [{doc}]}}"),
            None => format!("{{{step}: {doc}}}"),
        };
    }
    doc
}

/// The fields of the section at `path`, if it is a section.
fn probe(path: &[String]) -> Option<Vec<String>> {
    match parse_yaml::<super::Config>(std::path::Path::new("probe.yaml"), &document(path)) {
        Ok(_) => None,
        Err(d) => fields_in(&d.message),
    }
}

/// Every field path of the config model: `listen.tls.cert`, `upstreams[].s3.region`, ….
pub(crate) fn field_paths() -> Vec<String> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let Some(fields) = probe(&path) else { continue };
        for f in fields {
            let mut sub = path.clone();
            sub.push(f.clone());
            let mut list = path.clone();
            list.push(format!("{f}[]"));
            let shown = |p: &[String]| p.join(".");
            if path.len() < 6 && probe(&sub).is_some() {
                out.push(shown(&sub));
                todo.push(sub);
            } else if path.len() < 6 && probe(&list).is_some() {
                out.push(shown(&list));
                todo.push(list);
            } else {
                out.push(shown(&sub));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_the_fields_of_a_section() {
        let top = probe(&[]).unwrap();
        assert!(top.contains(&"listen".to_owned()), "{top:?}");
        let keys = probe(&["auth".into(), "keys[]".into()]).unwrap();
        assert!(keys.contains(&"kid".to_owned()), "{keys:?}");
        assert_eq!(probe(&["mode".into()]), None);
    }

    #[test]
    fn docs_configuration_md_names_every_field() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .unwrap_or_default();
        let paths = field_paths();
        assert!(paths.len() > 50, "{paths:?}");
        let missing: Vec<&String> = paths
            .iter()
            .filter(|p| !doc.contains(&format!("`{p}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md does not describe these config fields: {missing:?}"
        );
    }
}
