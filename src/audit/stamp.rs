//! Who writes a log: the replica every record is stamped with (`replica`, `region`) and
//! the policy version its `start` event reports.

use super::{EventRecord, Record};

/// Who writes a log: the replica every record it takes is stamped with, and the policy
/// version its `start` event reports.
#[derive(Clone, Debug, Default)]
pub struct Stamp {
    /// Added to every record as `replica` (and `region` when set); none: nothing added.
    pub replica: Option<crate::config::Replica>,
    /// The policy version in force when the log opens.
    pub policy_version: Option<String>,
}

impl Stamp {
    /// The members every record gets, as JSON: `,"replica":"…","region":"…"` (empty
    /// without a replica).
    pub(super) fn members(&self) -> Vec<u8> {
        let Some(r) = &self.replica else {
            return Vec::new();
        };
        let quoted = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        let mut out = format!(",\"replica\":{}", quoted(&r.name));
        if let Some(region) = &r.region {
            out.push_str(&format!(",\"region\":{}", quoted(region)));
        }
        out.into_bytes()
    }

    /// A `start` event with the policy version.
    pub(super) fn start_event(&self, detail: String) -> Record {
        let mut e = EventRecord::new("start", detail);
        e.policy_version.clone_from(&self.policy_version);
        Record::Event(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Replica;

    #[test]
    fn members_are_json_ready_to_splice() {
        assert!(Stamp::default().members().is_empty());
        let s = Stamp {
            replica: Some(Replica {
                name: "gw-1".into(),
                region: Some("eu \"central\"".into()),
            }),
            policy_version: Some("sha256:ab".into()),
        };
        assert_eq!(
            String::from_utf8(s.members()).unwrap(),
            r#","replica":"gw-1","region":"eu \"central\"""#
        );
        let Record::Event(e) = s.start_event("new log".into()) else {
            panic!("not an event")
        };
        assert_eq!(e.policy_version.as_deref(), Some("sha256:ab"));
    }
}
