//! PIPL cumulative export volumes: the bands of the CAC Provisions on Promoting and
//! Regulating Cross-Border Data Flows (22 Mar 2024) and the volume a decision considers.
//!
//! Counted per exporting data handler since 1 January of the year (Provisions Art. 5(4),
//! 7, 8). Chinese statutory text counts "以上" inclusively, so 100,000 individuals is
//! already in the standard-contract band and 1,000,000 (or 10,000 sensitive) already in
//! the security-assessment band.

use std::fmt::Write;

use serde::Serialize;

use crate::model::{Category, Tags};

/// Below this many individuals' non-sensitive personal information: exempt (Art. 5(4)).
pub const EXEMPT_BELOW: u64 = 100_000;
/// From this many individuals' non-sensitive personal information: security assessment (Art. 7(2)).
pub const ASSESSMENT_FROM: u64 = 1_000_000;
/// From this many individuals' sensitive personal information: security assessment (Art. 7(2)).
pub const SENSITIVE_ASSESSMENT_FROM: u64 = 10_000;

/// A volume band: which mechanism the cumulative volume requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Band {
    /// No mechanism required (Provisions Art. 5(4)).
    Exempt,
    /// Filed standard contract or certification (Provisions Art. 8).
    Contract,
    /// CAC security assessment (Provisions Art. 7; PIPL Art. 40).
    Assessment,
}

impl Band {
    pub const ALL: [Band; 3] = [Band::Exempt, Band::Contract, Band::Assessment];

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Exempt => "exempt",
            Band::Contract => "contract",
            Band::Assessment => "assessment",
        }
    }

    pub fn parse(s: &str) -> Option<Band> {
        Band::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// A bit for band sets (`volume_bands` of a rule).
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The mechanism the band requires, in words.
    pub fn requirement(self) -> &'static str {
        match self {
            Band::Exempt => {
                "no mechanism (exempt, Provisions on Promoting and Regulating Cross-Border Data Flows Art. 5(4))"
            }
            Band::Contract => {
                "a filed CAC standard contract or a PIPL certification (PIPL Art. 38(1)(2)-(3); Provisions Art. 8)"
            }
            Band::Assessment => {
                "a CAC security assessment (PIPL Art. 38(1)(1), Art. 40; Provisions Art. 7)"
            }
        }
    }
}

/// Why a volume is in its band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Below every threshold.
    BelowThresholds,
    /// No exporting data handler could be identified.
    UnknownExporter,
    /// The exporter is a critical information infrastructure operator.
    Ciio,
    /// The data is tagged as important data.
    ImportantData,
    /// The number of individuals is unknown (no `subjects` on the data, or not supplied).
    UnknownVolume,
    /// 10,000 or more individuals' sensitive personal information.
    Sensitive10k,
    /// 1,000,000 or more individuals' non-sensitive personal information.
    NonSensitive1m,
    /// 100,000 or more individuals' non-sensitive personal information.
    NonSensitive100k,
    /// Any sensitive personal information (under 10,000 individuals).
    SensitiveAny,
}

/// The cumulative volume a decision considers, as the gateway's counter reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// The exporting data handler (registry id), when identified.
    pub exporter: Option<String>,
    /// The calendar year counted (since 1 January).
    pub year: i32,
    /// Individuals' non-sensitive personal information exported this year, before this transfer.
    pub non_sensitive: u64,
    /// Individuals' sensitive personal information (PIPL Art. 28) exported this year, before this transfer.
    pub sensitive: u64,
    /// An export of unknown size was counted this year: the totals are unbounded.
    pub unbounded: bool,
    /// Individuals whose personal information this data holds (`subjects`); `None`: unknown.
    pub subjects: Option<u64>,
    /// This data was already counted for the exporter this year (same individuals).
    pub already_counted: bool,
    /// The data is tagged as important data (Data Security Law Art. 21).
    pub important_data: bool,
}

/// The band a query falls in, with the totals after the transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assessed {
    pub band: Band,
    pub trigger: Trigger,
    /// Non-sensitive total after this transfer (`None`: unknown).
    pub non_sensitive_after: Option<u64>,
    /// Sensitive total after this transfer (`None`: unknown).
    pub sensitive_after: Option<u64>,
}

/// True for categories PIPL Art. 28 treats as sensitive personal information: the GDPR
/// special categories, criminal records and data of minors under 14 (Art. 28(1), 31).
pub fn is_sensitive(c: Category) -> bool {
    c.is_special() || matches!(c, Category::Criminal | Category::Children)
}

/// Which totals data with these tags adds to: (non-sensitive, sensitive). Data holding
/// sensitive information counts as sensitive; it also counts as non-sensitive when it
/// holds ordinary personal information too (conservative: both totals grow).
pub fn counts_towards(tags: &Tags) -> (bool, bool) {
    let sensitive = tags.categories.iter().any(|c| is_sensitive(*c));
    let ordinary = tags
        .categories
        .iter()
        .any(|c| matches!(c, Category::Personal | Category::Pseudonymous));
    (ordinary || !sensitive, sensitive)
}

/// The band of `v` for data with `tags` and an exporter that is (`Some(true)`) or is not a
/// CIIO (`None`: the exporter is unknown); `None` for `v`: the volume is unknown. Fails
/// closed: anything unknown is the security-assessment band.
pub fn assess(v: Option<&VolumeInfo>, tags: &Tags, ciio: Option<bool>) -> Assessed {
    let unknown = |trigger| Assessed {
        band: Band::Assessment,
        trigger,
        non_sensitive_after: None,
        sensitive_after: None,
    };
    let Some(v) = v else {
        return unknown(Trigger::UnknownVolume);
    };
    let (ns, s) = counts_towards(tags);
    let add = if v.already_counted {
        Some(0)
    } else {
        v.subjects
    };
    let total = |before: u64, counts: bool| -> Option<u64> {
        if v.unbounded {
            return None;
        }
        if counts {
            add.map(|a| before.saturating_add(a))
        } else {
            Some(before)
        }
    };
    let nsa = total(v.non_sensitive, ns);
    let sa = total(v.sensitive, s);
    let with = |band, trigger| Assessed {
        band,
        trigger,
        non_sensitive_after: nsa,
        sensitive_after: sa,
    };
    match ciio {
        None => return with(Band::Assessment, Trigger::UnknownExporter),
        Some(true) => return with(Band::Assessment, Trigger::Ciio),
        Some(false) => {}
    }
    if v.important_data {
        return with(Band::Assessment, Trigger::ImportantData);
    }
    let (Some(nsa), Some(sa)) = (nsa, sa) else {
        return with(Band::Assessment, Trigger::UnknownVolume);
    };
    if sa >= SENSITIVE_ASSESSMENT_FROM {
        with(Band::Assessment, Trigger::Sensitive10k)
    } else if nsa >= ASSESSMENT_FROM {
        with(Band::Assessment, Trigger::NonSensitive1m)
    } else if nsa >= EXEMPT_BELOW {
        with(Band::Contract, Trigger::NonSensitive100k)
    } else if sa > 0 {
        with(Band::Contract, Trigger::SensitiveAny)
    } else {
        with(Band::Exempt, Trigger::BelowThresholds)
    }
}

/// Writes `n` with thousands separators (`110,000`).
pub fn write_count(out: &mut String, n: Option<u64>) {
    let Some(n) = n else {
        out.push_str("an unknown number of");
        return;
    };
    let digits = n.to_string();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
}

/// One plain-language sentence: the volume considered, its band and what it requires.
pub fn describe(v: Option<&VolumeInfo>, a: &Assessed) -> String {
    let mut s = String::new();
    let Some(v) = v else {
        s.push_str("The cumulative export volume is unknown, so it is taken to be in the security-assessment band (fail closed): ");
        s.push_str(Band::Assessment.requirement());
        s.push_str(" is required.");
        return s;
    };
    let exporter = v.exporter.as_deref().unwrap_or("an unidentified exporter");
    let _ = write!(
        s,
        "Cumulative export volume of `{exporter}` since 1 January {} after this transfer: ",
        v.year
    );
    write_count(&mut s, a.non_sensitive_after);
    s.push_str(" individuals' non-sensitive and ");
    write_count(&mut s, a.sensitive_after);
    s.push_str(" individuals' sensitive personal information");
    if v.already_counted {
        s.push_str(" (this data was already counted this year)");
    } else if v.subjects.is_none() {
        s.push_str(" (the data records no number of subjects)");
    }
    let _ = write!(s, "; band `{}` (", a.band.as_str());
    s.push_str(match a.trigger {
        Trigger::BelowThresholds => "below 100,000 individuals, no sensitive information",
        Trigger::UnknownExporter => {
            "no exporting data handler identified, so CIIO status and volume are unknown: fail closed"
        }
        Trigger::Ciio => "the exporter is a critical information infrastructure operator",
        Trigger::ImportantData => "the data is important data",
        Trigger::UnknownVolume => "the number of individuals is unknown: fail closed",
        Trigger::Sensitive10k => "10,000 or more individuals' sensitive personal information",
        Trigger::NonSensitive1m => "1,000,000 or more individuals' personal information",
        Trigger::NonSensitive100k => {
            "100,000 or more individuals' non-sensitive personal information crossed"
        }
        Trigger::SensitiveAny => "sensitive personal information of under 10,000 individuals",
    });
    s.push_str("), which requires ");
    s.push_str(a.band.requirement());
    s.push('.');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(cats: &[Category]) -> Tags {
        Tags {
            categories: cats.iter().copied().collect(),
            ..Tags::default()
        }
    }

    fn vol(ns: u64, s: u64, subjects: Option<u64>) -> VolumeInfo {
        VolumeInfo {
            exporter: Some("acme-cn".into()),
            year: 2026,
            non_sensitive: ns,
            sensitive: s,
            subjects,
            ..VolumeInfo::default()
        }
    }

    #[test]
    fn bands_follow_the_2024_provisions() {
        let p = tags(&[Category::Personal]);
        let h = tags(&[Category::Health]);
        let b = |v: VolumeInfo, t: &Tags| assess(Some(&v), t, Some(false)).band;
        assert_eq!(b(vol(0, 0, Some(99_999)), &p), Band::Exempt);
        assert_eq!(b(vol(1, 0, Some(99_999)), &p), Band::Contract);
        assert_eq!(b(vol(50_000, 0, Some(50_000)), &p), Band::Contract);
        assert_eq!(b(vol(999_999, 0, Some(0)), &p), Band::Contract);
        assert_eq!(b(vol(999_999, 0, Some(1)), &p), Band::Assessment);
        assert_eq!(b(vol(0, 0, Some(1)), &h), Band::Contract);
        assert_eq!(b(vol(0, 9_998, Some(1)), &h), Band::Contract);
        assert_eq!(b(vol(0, 9_999, Some(1)), &h), Band::Assessment);
        // Earlier sensitive exports put ordinary data in the contract band too.
        assert_eq!(b(vol(0, 5, Some(10)), &p), Band::Contract);
    }

    #[test]
    fn the_volume_after_this_transfer_counts_once() {
        let p = tags(&[Category::Personal]);
        let mut v = vol(95_000, 0, Some(10_000));
        let a = assess(Some(&v), &p, Some(false));
        assert_eq!(
            (a.band, a.non_sensitive_after),
            (Band::Contract, Some(105_000))
        );
        v.already_counted = true;
        let a = assess(Some(&v), &p, Some(false));
        assert_eq!(
            (a.band, a.non_sensitive_after),
            (Band::Exempt, Some(95_000))
        );
    }

    #[test]
    fn unknowns_fail_closed() {
        let p = tags(&[Category::Personal]);
        assert_eq!(assess(None, &p, Some(false)).band, Band::Assessment);
        assert_eq!(
            assess(Some(&vol(0, 0, None)), &p, Some(false)).trigger,
            Trigger::UnknownVolume
        );
        assert_eq!(
            assess(Some(&vol(0, 0, Some(5))), &p, None).trigger,
            Trigger::UnknownExporter
        );
        assert_eq!(
            assess(Some(&vol(0, 0, Some(5))), &p, Some(true)).trigger,
            Trigger::Ciio
        );
        let mut v = vol(0, 0, Some(5));
        v.important_data = true;
        assert_eq!(assess(Some(&v), &p, Some(false)).band, Band::Assessment);
        let mut v = vol(0, 0, Some(5));
        v.unbounded = true;
        assert_eq!(assess(Some(&v), &p, Some(false)).band, Band::Assessment);
    }

    #[test]
    fn the_description_names_band_and_mechanism() {
        let p = tags(&[Category::Personal]);
        let v = vol(95_000, 0, Some(15_000));
        let d = describe(Some(&v), &assess(Some(&v), &p, Some(false)));
        assert!(d.contains("`acme-cn` since 1 January 2026"), "{d}");
        assert!(d.contains("110,000 individuals' non-sensitive"), "{d}");
        assert!(d.contains("band `contract`"), "{d}");
        assert!(d.contains("standard contract"), "{d}");
        assert!(d.contains("Provisions Art. 8"), "{d}");
    }
}
