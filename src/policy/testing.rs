//! `bordergate policy test`: YAML test cases shipped beside the policies, run against
//! the one evaluator, with rule coverage (like `opa test`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::volume::VolumeInfo;
use super::{Outcome, PolicySet, TraceStep};
use crate::config::{Diagnostic, Diagnostics, parse_yaml};
use crate::model::{Country, Direction, Effect, Tags, check_purpose};

/// One test file (`<policies>/tests/*.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Registry the cases run against, relative to the test file (default: `registry.yaml`
    /// beside it).
    #[serde(default)]
    registry: Option<String>,
    #[serde(default)]
    defaults: CaseSpec,
    cases: Vec<Spanned<CaseSpec>>,
}

/// A case as written; every field may come from `defaults`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    #[serde(default)]
    name: Option<String>,
    /// The importing organisation (registry id).
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    /// Destination country.
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    data: Option<DataSpec>,
    /// PIPL cumulative export volume of the exporter; omitted: unknown (highest band).
    #[serde(default)]
    volume: Option<VolumeSpec>,
    #[serde(default)]
    expect: Option<Effect>,
    /// Expected deciding rule id.
    #[serde(default)]
    rule: Option<String>,
    /// Substring the deciding rule's article must contain.
    #[serde(default)]
    article: Option<String>,
    /// Substring the reason must contain.
    #[serde(default)]
    reason: Option<String>,
    /// Expected instrument id of the decision (`none`: the decision names none).
    #[serde(default)]
    instrument: Option<String>,
    /// Substring the required transformation must contain (`identifier: pseudonymise`;
    /// `none`: the decision requires none).
    #[serde(default)]
    transform: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct DataSpec {
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default)]
    categories: Option<Vec<String>>,
    /// Purposes the data permits; default: every purpose.
    #[serde(default)]
    purposes: Option<Vec<String>>,
    #[serde(default)]
    derogations: Option<Vec<String>>,
}

/// The exporter's volume so far this year, as the gateway's counter would report it.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct VolumeSpec {
    /// Exporting organisation (registry id); omitted: unidentified.
    #[serde(default)]
    exporter: Option<String>,
    /// Individuals' non-sensitive personal information exported this year before the case.
    #[serde(default)]
    non_sensitive: u64,
    /// Individuals' sensitive personal information exported this year before the case.
    #[serde(default)]
    sensitive: u64,
    /// Individuals the data holds; omitted: unknown.
    #[serde(default)]
    subjects: Option<u64>,
    /// The data was already counted this year.
    #[serde(default)]
    counted: bool,
    #[serde(default)]
    important_data: bool,
}

fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
    a.clone().or_else(|| b.clone())
}

/// A checked, runnable case.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub org: Option<String>,
    pub purpose: String,
    pub destination: Country,
    pub direction: Direction,
    pub date: time::Date,
    pub tags: Tags,
    pub volume: Option<VolumeInfo>,
    pub expect: Effect,
    pub rule: Option<String>,
    pub article: Option<String>,
    pub reason: Option<String>,
    pub instrument: Option<String>,
    /// Substring of the required transformation's summary (`none`: none required).
    pub transform: Option<String>,
    /// Registry file the case runs against.
    pub registry: PathBuf,
}

/// The result of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    /// `file:line name: what went wrong`.
    pub failures: Vec<String>,
    /// Rules without a case deciding them (`rule`, `file`).
    pub uncovered: Vec<(String, String)>,
    /// Conditional rules without a case where they do not apply and the opposite effect wins.
    pub no_counter_case: Vec<(String, String)>,
    pub rules_total: usize,
}

impl Report {
    /// True when every case passed and every rule is covered.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.uncovered.is_empty() && self.no_counter_case.is_empty()
    }

    /// Human-readable summary.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.failures {
            let _ = writeln!(s, "FAIL {f}");
        }
        for (r, f) in &self.uncovered {
            let _ = writeln!(s, "UNCOVERED rule `{r}` ({f}): no case is decided by it");
        }
        for (r, f) in &self.no_counter_case {
            let _ = writeln!(
                s,
                "UNCOVERED rule `{r}` ({f}): no case where it does not apply and the opposite effect wins"
            );
        }
        let _ = writeln!(
            s,
            "{} passed, {} failed; {} rules, {} without a deciding case, {} without a counter case",
            self.passed,
            self.failures.len(),
            self.rules_total,
            self.uncovered.len(),
            self.no_counter_case.len()
        );
        s
    }
}

/// The test files of `tdir` (`*.yaml`, files named `registry*` excepted), sorted.
fn test_files(tdir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tdir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (n.ends_with(".yaml") || n.ends_with(".yml"))
                && !n.starts_with("registry")
                && !n.starts_with('.')
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every test file of `dir/tests/` (`*.yaml`, files named `registry*` excepted).
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, Diagnostics> {
    let tdir = dir.join("tests");
    let files = test_files(&tdir).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            &tdir,
            None,
            format!("cannot read test directory: {e}"),
        )])
    })?;
    let mut errs = Vec::new();
    let mut cases = Vec::new();
    if files.is_empty() {
        errs.push(Diagnostic::new(
            &tdir,
            None,
            "no test files (`*.yaml`) in the test directory",
        ));
    }
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errs.push(Diagnostic::new(f, None, format!("cannot read file: {e}")));
                continue;
            }
        };
        match parse_yaml::<TestFile>(f, &text) {
            Ok(tf) => {
                let registry = tdir.join(tf.registry.as_deref().unwrap_or("registry.yaml"));
                for c in &tf.cases {
                    match check_case(f, &registry, &tf.defaults, c) {
                        Ok(c) => cases.push(c),
                        Err(d) => errs.push(d),
                    }
                }
            }
            Err(d) => errs.push(d),
        }
    }
    if errs.is_empty() {
        Ok(cases)
    } else {
        Err(Diagnostics(errs))
    }
}

fn check_case(
    file: &Path,
    registry: &Path,
    d: &CaseSpec,
    c: &Spanned<CaseSpec>,
) -> Result<Case, Diagnostic> {
    let line = usize::try_from(c.referenced.line()).unwrap_or(0);
    let c = &c.value;
    let err = |m: String| Diagnostic::new(file, (line > 0).then_some(line), m);
    let name = c
        .name
        .clone()
        .unwrap_or_else(|| format!("case at line {line}"));
    let to = pick(&c.to, &d.to).ok_or_else(|| err(format!("case `{name}` has no `to`")))?;
    let destination = Country::parse(&to).map_err(&err)?;
    let purpose = pick(&c.purpose, &d.purpose).unwrap_or_else(|| "analytics".into());
    check_purpose(&purpose).map_err(&err)?;
    let date = pick(&c.date, &d.date).ok_or_else(|| err(format!("case `{name}` has no `date`")))?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(&date, fmt)
        .map_err(|_| err(format!("invalid date `{date}` (expected YYYY-MM-DD)")))?;
    let expect = pick(&c.expect, &d.expect)
        .ok_or_else(|| err(format!("case `{name}` has no `expect` (allow or deny)")))?;
    let dd = d.data.clone().unwrap_or_default();
    let cd = c.data.clone().unwrap_or_default();
    let tags = Tags::given(
        &pick(&cd.origins, &dd.origins).unwrap_or_default(),
        pick(&cd.categories, &dd.categories).as_deref(),
        pick(&cd.purposes, &dd.purposes).as_deref(),
        &pick(&cd.derogations, &dd.derogations).unwrap_or_default(),
    )
    .map_err(&err)?;
    let volume = pick(&c.volume, &d.volume).map(|v| VolumeInfo {
        exporter: v.exporter,
        year: date.year(),
        non_sensitive: v.non_sensitive,
        sensitive: v.sensitive,
        unbounded: false,
        subjects: v.subjects,
        already_counted: v.counted,
        important_data: v.important_data,
    });
    Ok(Case {
        file: file.to_path_buf(),
        line,
        name,
        org: pick(&c.org, &d.org),
        purpose,
        destination,
        direction: pick(&c.direction, &d.direction).unwrap_or(Direction::Download),
        date,
        tags,
        volume,
        expect,
        rule: c.rule.clone(),
        article: c.article.clone(),
        reason: c.reason.clone(),
        instrument: c.instrument.clone(),
        transform: c.transform.clone(),
        registry: registry.to_path_buf(),
    })
}

/// The pack's own cases as a reload runs them before its set goes into force: [`run`],
/// except that a pack without test files (no `tests/` directory, or nothing in it) has
/// no cases rather than an error.
pub fn run_pack(dir: &Path) -> Result<Report, Diagnostics> {
    match test_files(&dir.join("tests")) {
        Ok(files) if !files.is_empty() => run(dir),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => run(dir),
        _ => Ok(Report::default()),
    }
}

/// Runs the cases of `dir/tests/` against the policies of `dir`, with coverage.
pub fn run(dir: &Path) -> Result<Report, Diagnostics> {
    let cases = load_cases(dir)?;
    let mut sets: BTreeMap<PathBuf, PolicySet> = BTreeMap::new();
    for c in &cases {
        if !sets.contains_key(&c.registry) {
            let set = PolicySet::load(dir, &c.registry)?;
            sets.insert(c.registry.clone(), set);
        }
    }
    let Some(first) = sets.values().next() else {
        return Ok(Report::default());
    };
    let mut report = Report::default();
    // rule id → (hit, counter)
    let mut seen = Seen::new();
    for c in &cases {
        let Some(set) = sets.get(&c.registry) else {
            continue;
        };
        // Through the transfer, as the gateway decides.
        let t = crate::transfer::Transfer::of_tags(
            c.tags.clone(),
            c.direction,
            c.destination,
            c.org.as_deref(),
            &c.purpose,
        );
        let (d, trace) = t.decide_with_trace(set, c.date, c.volume.as_ref());
        let mut problems = Vec::new();
        if d.effect != c.expect {
            problems.push(format!("expected {:?}, got {:?}", c.expect, d.effect));
        }
        if let Some(r) = &c.rule
            && *r != d.rule
        {
            problems.push(format!("expected rule `{r}`, got `{}`", d.rule));
        }
        if let Some(a) = &c.article
            && !d.article.contains(a.as_str())
        {
            problems.push(format!(
                "expected article containing `{a}`, got `{}`",
                d.article
            ));
        }
        if let Some(r) = &c.reason
            && !d.reason.contains(r.as_str())
        {
            problems.push(format!("expected reason containing `{r}`"));
        }
        if let Some(i) = &c.instrument {
            let got = d.instrument.as_deref().map_or("none", |x| x.id.as_str());
            if i != got {
                problems.push(format!("expected instrument `{i}`, got `{got}`"));
            }
        }
        if let Some(t) = &c.transform {
            let got = d
                .transform
                .as_deref()
                .map_or_else(|| "none".to_string(), |x| x.summary());
            if !(got == *t || (t != "none" && got.contains(t.as_str()))) {
                problems.push(format!("expected transformation `{t}`, got `{got}`"));
            }
        }
        if problems.is_empty() {
            report.passed += 1;
        } else {
            report.failures.push(format!(
                "{}:{} `{}`: {} (decided by `{}`: {})",
                c.file.display(),
                c.line,
                c.name,
                problems.join("; "),
                d.rule,
                d.reason
            ));
        }
        record_coverage(&mut seen, &trace, d.effect);
    }
    for (rule, file, effect, needs_counter, needs_hit) in rules_of(first) {
        report.rules_total += 1;
        let (hit, na_allow, na_deny) = seen.get(&rule).copied().unwrap_or_default();
        let hit = hit || !needs_hit;
        let counter = match effect {
            Effect::Allow => na_deny,
            Effect::Deny => na_allow,
        };
        if !hit {
            report.uncovered.push((rule.clone(), file.clone()));
        }
        if needs_counter && !counter {
            report.no_counter_case.push((rule, file));
        }
    }
    Ok(report)
}

/// Per rule: decided some case; did not apply in a case that ended allow; … ended deny.
type Seen = BTreeMap<String, (bool, bool, bool)>;

fn record_coverage(seen: &mut Seen, trace: &[TraceStep], effect: Effect) {
    for t in trace {
        let e = seen.entry(t.rule.clone()).or_default();
        match (t.outcome, effect) {
            (Outcome::Allow | Outcome::Deny, _) => e.0 = true,
            (Outcome::NotApplicable, Effect::Allow) => e.1 = true,
            (Outcome::NotApplicable, Effect::Deny) => e.2 = true,
        }
    }
}

/// Every rule of the set: id, file, effect, whether it needs a counter case (it has
/// conditions, so both an allow and a deny outcome are possible) and whether it can decide
/// at all (a default refusal after an unconditional allow rule cannot).
pub fn rules_of(set: &PolicySet) -> Vec<(String, String, Effect, bool, bool)> {
    use Effect::{Allow, Deny};
    let mut out = Vec::new();
    for r in set.regimes() {
        let f = r.file.display().to_string();
        let unconditional_allow = r.rules.iter().any(|x| x.effect == Allow && !conditional(x));
        out.push((r.out_of_scope.id.to_string(), f.clone(), Allow, true, true));
        if let Some(p) = &r.purpose {
            out.push((p.id.to_string(), f.clone(), Deny, true, true));
        }
        out.push((r.intra_bloc.id.to_string(), f.clone(), Allow, true, true));
        out.push((
            r.default_deny.id.to_string(),
            f.clone(),
            Deny,
            false,
            !unconditional_allow,
        ));
        for rule in &r.rules {
            out.push((
                rule.id.to_string(),
                f.clone(),
                rule.effect,
                conditional(rule),
                true,
            ));
        }
    }
    for o in set.overlay() {
        out.push((
            o.id.to_string(),
            o.file.display().to_string(),
            Deny,
            true,
            true,
        ));
    }
    out
}

fn conditional(rule: &super::Rule) -> bool {
    rule.destinations.is_some()
        || rule.effective_from.is_some()
        || rule.effective_until.is_some()
        || rule.purposes.is_some()
        || rule.categories_any.is_some()
        || rule.categories_only.is_some()
        || rule.requires_mechanism.is_some()
        || rule.requires_derogation.is_some()
        || rule.volume_bands.is_some()
}
