//! Places and data categories the officer's filters name: a country (`DE`) or a regime of the
//! policy pack (`EU`, `EEA`, `UK`, …), a category (`personal`, `special`, `health`, `public`),
//! and whether a transfer leaves the regime of its origin ("third countries only").
//!
//! Regime membership is the pack's own: the `members` lists the evaluator decides with
//! ([`crate::policy::PolicySet::regime_for`]). Without a pack the EEA alone is known, as the
//! Art. 30 record has always counted it.

use crate::model::{Category, Country};
use crate::policy::{CountrySet, PolicySet};

/// EEA member states: the regime known without a policy pack.
const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS",
    "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// One regime: the names a filter may use for it and its member countries.
#[derive(Clone, Debug)]
struct Area {
    /// Upper-case names: the regime's id, and `EEA` for a regime whose name says it covers the EEA.
    names: Vec<String>,
    members: CountrySet,
}

/// The regimes a filter can name, and which regime governs data from each country.
#[derive(Clone, Debug)]
pub struct Regions {
    areas: Vec<Area>,
}

/// A place a filter names.
#[derive(Clone, Debug)]
pub enum Place {
    Country(Country),
    /// A regime: its name as asked and its member countries.
    Regime(String, CountrySet),
}

impl Place {
    /// True if `c` is the country, or a member of the regime.
    pub fn contains(&self, c: Country) -> bool {
        match self {
            Place::Country(x) => *x == c,
            Place::Regime(_, m) => m.contains(c),
        }
    }
}

impl Regions {
    /// The regimes of a loaded policy pack.
    pub fn from_policies(p: &PolicySet) -> Regions {
        let areas = p
            .regimes()
            .iter()
            .map(|r| {
                let mut names = vec![r.id.to_ascii_uppercase()];
                if r.name
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == "EEA")
                    && !names.iter().any(|n| n == "EEA")
                {
                    names.push("EEA".to_owned());
                }
                Area {
                    names,
                    members: r.members,
                }
            })
            .collect();
        Regions { areas }
    }

    /// Without a policy pack: the EEA only (as `EU` and `EEA`).
    pub fn builtin() -> Regions {
        let mut members = CountrySet::default();
        for c in EEA.iter().filter_map(|c| Country::parse(c).ok()) {
            members.insert(c);
        }
        Regions {
            areas: vec![Area {
                names: vec!["EU".into(), "EEA".into()],
                members,
            }],
        }
    }

    /// Every name a regime filter accepts, in pack order.
    pub fn names(&self) -> Vec<&str> {
        self.areas
            .iter()
            .flat_map(|a| a.names.iter().map(String::as_str))
            .collect()
    }

    /// Reads a filter's place: a regime name (case-insensitive) or an ISO country code.
    /// `what` names the filter in the error (`origin`, `destination`).
    pub fn place(&self, what: &str, s: &str) -> Result<Place, String> {
        let up = s.trim().to_ascii_uppercase();
        if let Some(a) = self.areas.iter().find(|a| a.names.contains(&up)) {
            return Ok(Place::Regime(up, a.members));
        }
        Country::parse(&up).map(Place::Country).map_err(|_| {
            format!(
                "unknown {what} `{}`: give an ISO country code (`DE`) or a regime of the policy pack ({})",
                s.escape_default(),
                self.names().join(", ")
            )
        })
    }

    /// The members of the regime governing data from `c`, if the pack has one.
    fn regime_of(&self, c: Country) -> Option<&CountrySet> {
        self.areas
            .iter()
            .map(|a| &a.members)
            .find(|m| m.contains(c))
    }

    /// True if moving data from `origins` to `dest` leaves the regime of one of its origins
    /// (for an origin no regime governs: goes to another country). A transfer to a third
    /// country, in GDPR Chapter V's words.
    pub fn leaves(&self, origins: &[Country], dest: Country) -> bool {
        origins.iter().any(|o| match self.regime_of(*o) {
            Some(m) => !m.contains(dest),
            None => *o != dest,
        })
    }
}

/// A category filter: any of these tests passes.
#[derive(Clone, Debug)]
pub struct Categories(Vec<CategoryTest>);

#[derive(Clone, Copy, Debug)]
enum CategoryTest {
    /// Any category that is personal data (`personal`).
    Personal,
    /// Any GDPR Art. 9 category (`special`).
    Special,
    /// No personal data at all (`public`, `non-personal`).
    NonPersonal,
    /// This category exactly (`health`, `criminal`, …).
    Exactly(Category),
}

impl Categories {
    /// Reads `personal`, `special`, `public` or a category name; several separated by commas.
    pub fn parse(s: &str) -> Result<Categories, String> {
        let mut tests = Vec::new();
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let w = w.to_ascii_lowercase();
            tests.push(match w.as_str() {
                "personal" => CategoryTest::Personal,
                "special" => CategoryTest::Special,
                "public" | "non-personal" => CategoryTest::NonPersonal,
                other => match Category::ALL.iter().find(|c| c.as_str() == other) {
                    Some(c) => CategoryTest::Exactly(*c),
                    None => {
                        return Err(format!(
                            "unknown category `{}`: give `personal`, `special`, `public` or one of {}",
                            other.escape_default(),
                            Category::ALL
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                },
            });
        }
        if tests.is_empty() {
            return Err("the category filter is empty".into());
        }
        Ok(Categories(tests))
    }

    /// True if data of `cats` passes; `None` (no tags) is taken to be personal data, as the
    /// evaluator takes it.
    pub fn matches(&self, cats: Option<&[Category]>) -> bool {
        let cats = cats.unwrap_or(&[Category::Personal]);
        self.0.iter().any(|t| match t {
            CategoryTest::Personal => cats.iter().any(|c| c.is_personal()),
            CategoryTest::Special => cats.iter().any(|c| c.is_special()),
            CategoryTest::NonPersonal => !cats.iter().any(|c| c.is_personal()),
            CategoryTest::Exactly(x) => cats.contains(x),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn c(s: &str) -> Country {
        Country::parse(s).unwrap()
    }

    #[test]
    fn regimes_and_countries() {
        let r = Regions::builtin();
        assert!(r.place("origin", "eu").unwrap().contains(c("NO")));
        assert!(r.place("origin", "EEA").unwrap().contains(c("DE")));
        assert!(!r.place("origin", "EU").unwrap().contains(c("US")));
        assert!(r.place("origin", "de").unwrap().contains(c("DE")));
        let e = r.place("origin", "Atlantis").unwrap_err();
        assert!(
            e.contains("unknown origin `Atlantis`") && e.contains("EU, EEA"),
            "{e}"
        );
        assert!(r.place("origin", "XZ").is_err());
    }

    #[test]
    fn leaving_the_regime() {
        let r = Regions::builtin();
        assert!(r.leaves(&[c("DE")], c("US")));
        assert!(!r.leaves(&[c("DE")], c("FR")));
        assert!(r.leaves(&[c("GB")], c("US")));
        assert!(!r.leaves(&[c("GB")], c("GB")));
        assert!(r.leaves(&[c("DE"), c("FR")], c("CH")));
    }

    #[test]
    fn the_pack_names_its_regimes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = PolicySet::load(
            &root.join("policies"),
            &root.join("examples/quickstart/registry.yaml"),
        )
        .unwrap();
        let r = Regions::from_policies(&set);
        assert!(r.place("origin", "UK").unwrap().contains(c("GB")));
        assert!(r.place("origin", "EEA").unwrap().contains(c("IS")));
        assert!(r.leaves(&[c("GB")], c("DE")));
        assert!(!r.leaves(&[c("CH")], c("CH")));
    }

    #[test]
    fn categories() {
        let p = Categories::parse("personal").unwrap();
        assert!(p.matches(Some(&[Category::Health])));
        assert!(p.matches(None));
        assert!(!p.matches(Some(&[Category::Public])));
        let s = Categories::parse("special").unwrap();
        assert!(s.matches(Some(&[Category::Personal, Category::Health])));
        assert!(!s.matches(Some(&[Category::Personal])));
        let pubf = Categories::parse("public").unwrap();
        assert!(pubf.matches(Some(&[Category::Public])));
        assert!(!pubf.matches(None));
        assert!(
            Categories::parse("health")
                .unwrap()
                .matches(Some(&[Category::Health]))
        );
        assert!(Categories::parse("gossip").is_err());
    }
}
