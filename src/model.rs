//! The vocabulary every module shares: countries, data categories, purposes, the caller and the decision.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// ISO 3166-1 alpha-2 codes (officially assigned), sorted.
const ISO_3166_ALPHA2: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// An ISO 3166-1 alpha-2 country code, always upper case and always assigned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// Parses an upper-case, officially assigned alpha-2 code (`DE`, `US`); nothing else.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        if b.len() == 2 && ISO_3166_ALPHA2.binary_search(&s).is_ok() {
            Ok(Country([b[0], b[1]]))
        } else {
            Err(format!("unknown country code `{}`", s.escape_default()))
        }
    }

    pub fn as_str(&self) -> &str {
        // Both bytes come from the ASCII table above.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Country {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Country {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than a `String`: reading an audit log parses millions of these.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Country;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 3166-1 alpha-2 country code")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Country, E> {
                Country::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A category of data, from least to most restrictive. GDPR Art. 9 special
/// categories and Art. 10 criminal data are their own variants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Published data, no personal data.
    Public,
    /// Anonymous data (GDPR Recital 26): outside the GDPR.
    Anonymous,
    /// Pseudonymised data: personal data unless the recipient cannot re-identify.
    Pseudonymous,
    /// Ordinary personal data.
    Personal,
    /// Special category without a more precise subtype (Art. 9(1)).
    Special,
    Health,
    Biometric,
    Genetic,
    RacialEthnicOrigin,
    PoliticalOpinions,
    ReligiousBeliefs,
    TradeUnion,
    SexLife,
    /// Criminal convictions and offences (Art. 10).
    Criminal,
    /// Data of children (Art. 8).
    Children,
}

impl Category {
    pub const ALL: &'static [Category] = &[
        Category::Public,
        Category::Anonymous,
        Category::Pseudonymous,
        Category::Personal,
        Category::Special,
        Category::Health,
        Category::Biometric,
        Category::Genetic,
        Category::RacialEthnicOrigin,
        Category::PoliticalOpinions,
        Category::ReligiousBeliefs,
        Category::TradeUnion,
        Category::SexLife,
        Category::Criminal,
        Category::Children,
    ];

    /// True for everything the transfer rules treat as personal data.
    pub fn is_personal(self) -> bool {
        !matches!(self, Category::Public | Category::Anonymous)
    }

    /// True for GDPR Art. 9(1) special categories.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Category::Special
                | Category::Health
                | Category::Biometric
                | Category::Genetic
                | Category::RacialEthnicOrigin
                | Category::PoliticalOpinions
                | Category::ReligiousBeliefs
                | Category::TradeUnion
                | Category::SexLife
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Public => "public",
            Category::Anonymous => "anonymous",
            Category::Pseudonymous => "pseudonymous",
            Category::Personal => "personal",
            Category::Special => "special",
            Category::Health => "health",
            Category::Biometric => "biometric",
            Category::Genetic => "genetic",
            Category::RacialEthnicOrigin => "racial-ethnic-origin",
            Category::PoliticalOpinions => "political-opinions",
            Category::ReligiousBeliefs => "religious-beliefs",
            Category::TradeUnion => "trade-union",
            Category::SexLife => "sex-life",
            Category::Criminal => "criminal",
            Category::Children => "children",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The purposes bordergate knows; a token, a dataset or a rule naming another is an error.
pub const PURPOSES: &[&str] = &[
    "analytics",
    "evaluation",
    "fine-tuning",
    "inference",
    "marketing",
    "operations",
    "research",
    "security",
    "support",
    "training",
];

/// Checks that `p` is one of [`PURPOSES`].
pub fn check_purpose(p: &str) -> Result<(), String> {
    if PURPOSES.contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "unknown purpose `{}` (known: {})",
            p.escape_default(),
            PURPOSES.join(", ")
        ))
    }
}

/// GDPR Art. 49(1) derogations that can be recorded on a dataset.
pub const DEROGATIONS: &[&str] = &[
    "explicit-consent",
    "contract",
    "public-interest",
    "legal-claims",
    "vital-interests",
    "public-register",
];

/// Residency tags of a dataset or model artifact, after lineage is folded in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tags {
    /// Countries the data originates from; every one's export rules apply.
    pub origins: BTreeSet<Country>,
    /// Categories of data present.
    pub categories: BTreeSet<Category>,
    /// Purposes the data may be used for; `None` means any (only for non-personal data).
    pub purposes: Option<BTreeSet<String>>,
    /// Art. 49(1) derogations recorded for the data (all sources must have recorded one to count).
    pub derogations: BTreeSet<String>,
    /// Lawful bases recorded on the data (informational).
    pub lawful_basis: BTreeSet<String>,
    /// Catalog ids this data was derived from, transitively.
    pub lineage: BTreeSet<String>,
    /// An anonymity assessment is on record (EDPB Opinion 28/2024) for a model artifact.
    pub anonymity_assessed: bool,
}

impl Tags {
    /// Tags written out by hand (a `policy test` case, `policy explain --origin …`): origin
    /// codes, categories (default `personal`), the purposes the data permits (default
    /// every purpose) and recorded Art. 49(1) derogations.
    pub fn given<S: AsRef<str>>(
        origins: &[S],
        categories: Option<&[S]>,
        purposes: Option<&[S]>,
        derogations: &[S],
    ) -> Result<Tags, String> {
        let mut t = Tags::default();
        for o in origins {
            t.origins.insert(Country::parse(o.as_ref().trim())?);
        }
        match categories {
            Some(cats) => {
                for c in cats {
                    let c = c.as_ref().trim();
                    let cat = Category::ALL
                        .iter()
                        .find(|k| k.as_str() == c)
                        .ok_or_else(|| format!("unknown category `{}`", c.escape_default()))?;
                    t.categories.insert(*cat);
                }
            }
            None => {
                t.categories.insert(Category::Personal);
            }
        }
        let mut permitted = BTreeSet::new();
        match purposes {
            Some(ps) => {
                for p in ps {
                    let p = p.as_ref().trim();
                    check_purpose(p)?;
                    permitted.insert(p.to_string());
                }
            }
            None => permitted.extend(PURPOSES.iter().map(|p| p.to_string())),
        }
        t.purposes = Some(permitted);
        for g in derogations {
            let g = g.as_ref().trim();
            if !DEROGATIONS.contains(&g) {
                return Err(format!("unknown derogation `{}`", g.escape_default()));
            }
            t.derogations.insert(g.to_string());
        }
        Ok(t)
    }

    /// True if any category counts as personal data.
    pub fn is_personal(&self) -> bool {
        self.categories.iter().any(|c| c.is_personal())
    }

    /// True if any GDPR Art. 9 special category is present.
    pub fn is_special(&self) -> bool {
        self.categories.iter().any(|c| c.is_special())
    }

    /// Folds `other` (a source of this data) into `self`: the result is never less
    /// restrictive than either. Origins and categories unite, purposes and derogations
    /// intersect.
    pub fn absorb(&mut self, other: &Tags) {
        self.origins.extend(other.origins.iter().copied());
        self.categories.extend(other.categories.iter().copied());
        self.purposes = match (self.purposes.take(), &other.purposes) {
            (None, None) => None,
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(b.clone()),
            (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
        };
        self.derogations = self
            .derogations
            .intersection(&other.derogations)
            .cloned()
            .collect();
        self.lawful_basis.extend(other.lawful_basis.iter().cloned());
        self.lineage.extend(other.lineage.iter().cloned());
    }
}

/// Who is asking, as the validated bearer token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub sub: String,
    pub org: String,
    /// Where the caller will process the data: the token's claim, or the registry's
    /// country for the caller's organisation under `auth.jurisdiction_claim: registry`.
    pub jurisdiction: Country,
    pub purpose: String,
    /// The token's `jurisdiction` claim when the registry's country replaced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_jurisdiction: Option<Country>,
}

/// Whether data leaves through the gateway (download) or enters an upstream (upload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Download,
    Upload,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Direction {
    /// As the records spell it: `download`, `upload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Effect {
    /// As the records spell it: `allow`, `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was refused, which decides the status: transfer grounds and withdrawn
/// data are 451 (RFC 7725), purpose and authorisation grounds 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyGround {
    Transfer,
    Purpose,
    Authorization,
    /// The data was withdrawn (erasure, consent withdrawn): GDPR Art. 17.
    Withdrawn,
    /// An upload's declared lineage does not cover personal data its uploader recently
    /// downloaded.
    Lineage,
}

/// One origin's verdict inside a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Basis {
    pub origin: Country,
    pub effect: Effect,
    pub rule: String,
    pub article: String,
    /// The instrument's catalogue id, when the rule rests on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
}

/// The outcome of evaluating the policies for one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    /// Set when `effect` is deny.
    pub ground: Option<DenyGround>,
    /// The rule that decided.
    pub rule: String,
    /// The legal article the rule rests on, e.g. `GDPR Art. 46(2)(c)`.
    pub article: String,
    /// Plain-language reason, free of personal data.
    pub reason: String,
    /// Hash of the loaded policy files.
    pub policy_version: Arc<str>,
    /// Per-origin verdicts, in origin order.
    pub bases: Vec<Basis>,
    /// The legal instrument the deciding rule rests on (none for the engine's own
    /// fail-closed refusals and for organisation policy).
    pub instrument: Option<Arc<Instrument>>,
    /// An allow that requires the data transformed first (minimised in transit): what each
    /// origin's rule requires, the stronger method where two differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform: Option<Arc<crate::transform::Requirement>>,
}

/// A legal instrument as data: the adequacy decision, clauses, approval, derogation or
/// statute provision a rule rests on, from the policy pack's `instruments` catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// Catalogue id, e.g. `eu.dpf-2023-1795`.
    pub id: String,
    /// What sort of instrument it is, e.g. `adequacy` (see the pack's README).
    pub kind: String,
    /// Short title, e.g. `Commission Implementing Decision (EU) 2023/1795 (EU-US Data
    /// Privacy Framework)`.
    pub title: String,
    /// Date of adoption (or of entry into force for a statute), `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Official reference: the act's number and its publication, e.g. `OJ L 231, 20.9.2023`.
    pub reference: String,
    /// The SCC module the importer's clauses follow (1 C2C, 2 C2P, 3 P2P, 4 P2C), when the
    /// decision relied on clauses with a module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<u8>,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_are_strict() {
        assert!(Country::parse("DE").is_ok());
        assert!(Country::parse("de").is_err());
        assert!(Country::parse("XZ").is_err());
        assert!(Country::parse("DEU").is_err());
        let mut sorted = ISO_3166_ALPHA2.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, ISO_3166_ALPHA2);
    }

    #[test]
    fn absorbing_a_source_never_relaxes() {
        let mut a = Tags {
            purposes: Some(
                ["analytics", "training"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            categories: [Category::Personal].into(),
            derogations: ["explicit-consent".to_string()].into(),
            ..Tags::default()
        };
        let b = Tags {
            purposes: Some(["training"].iter().map(|s| s.to_string()).collect()),
            categories: [Category::Health].into(),
            ..Tags::default()
        };
        a.absorb(&b);
        assert_eq!(a.purposes, Some(["training".to_string()].into()));
        assert!(a.is_special());
        assert!(a.derogations.is_empty());
    }
}
