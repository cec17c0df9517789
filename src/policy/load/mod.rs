//! Loading and checking policy files and the registry into a `PolicySet`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::schema::{FixedRule as FixedSpec, RegimeFile, RegistryFile, RuleSpec, S};
use super::template::Template;
use super::{CatMask, CountrySet, FixedRule, MECHANISM_KINDS, PolicySet, Regime, Rule, cover_mask};
use crate::config::{Diagnostic, Diagnostics, parse_yaml};
use crate::model::{Category, Country, DEROGATIONS, Effect, Instrument, check_purpose};

/// Largest policy or registry file accepted.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Collects diagnostics for one file.
struct Sink<'a> {
    file: &'a Path,
    errs: &'a mut Vec<Diagnostic>,
}

impl Sink<'_> {
    fn at<T>(&mut self, s: &Spanned<T>, msg: String) {
        let line = usize::try_from(s.referenced.line()).ok().filter(|l| *l > 0);
        self.errs.push(Diagnostic::new(self.file, line, msg));
    }

    fn country(&mut self, s: &S) -> Option<Country> {
        match Country::parse(&s.value) {
            Ok(c) => Some(c),
            Err(e) => {
                self.at(s, e);
                None
            }
        }
    }

    fn countries(&mut self, list: &[S]) -> CountrySet {
        let mut set = CountrySet::default();
        for s in list {
            if let Some(c) = self.country(s) {
                set.insert(c);
            }
        }
        set
    }

    fn category(&mut self, s: &S) -> Option<Category> {
        let c = Category::ALL
            .iter()
            .find(|c| c.as_str() == s.value)
            .copied();
        if c.is_none() {
            let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            self.at(
                s,
                format!(
                    "unknown category `{}` (known: {})",
                    s.value.escape_default(),
                    known.join(", ")
                ),
            );
        }
        c
    }

    fn categories(&mut self, list: &[S]) -> CatMask {
        list.iter()
            .filter_map(|s| self.category(s))
            .fold(0, |m, c| m | cover_mask(c))
    }

    /// The known purposes of a list; each unknown one is reported at its line.
    fn purposes(&mut self, list: &[S]) -> Vec<Box<str>> {
        list.iter()
            .filter_map(|p| match check_purpose(&p.value) {
                Ok(()) => Some(p.value.as_str().into()),
                Err(e) => {
                    self.at(p, e);
                    None
                }
            })
            .collect()
    }

    fn date(&mut self, s: &S) -> Option<time::Date> {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(s.value.trim(), fmt) {
            Ok(d) => Some(d),
            Err(_) => {
                self.at(
                    s,
                    format!(
                        "invalid date `{}` (expected YYYY-MM-DD)",
                        s.value.escape_default()
                    ),
                );
                None
            }
        }
    }

    fn kind(&mut self, s: &S) -> Option<&'static str> {
        let k = MECHANISM_KINDS
            .iter()
            .find(|(k, _)| *k == s.value)
            .map(|(k, _)| *k);
        if k.is_none() {
            let known: Vec<&str> = MECHANISM_KINDS.iter().map(|(k, _)| *k).collect();
            self.at(
                s,
                format!(
                    "unknown mechanism kind `{}` (known: {})",
                    s.value.escape_default(),
                    known.join(", ")
                ),
            );
        }
        k
    }

    fn template(&mut self, s: &S) -> Template {
        Template::parse(&s.value).unwrap_or_else(|e| {
            self.at(s, e);
            Template::default()
        })
    }

    /// Checks that from ≤ until, reporting at `until`.
    fn range(
        &mut self,
        from: Option<(&S, time::Date)>,
        until: Option<(&S, time::Date)>,
        what: &str,
    ) {
        if let (Some((_, f)), Some((us, u))) = (from, until)
            && f > u
        {
            self.at(us, format!("{what} `{f}` is after its end `{u}`"));
        }
    }
}

/// Reads a file's text, refusing huge files.
fn read(path: &Path) -> Result<String, Diagnostic> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::new(path, None, format!("cannot read file: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::new(
            path,
            None,
            format!("file is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(path, None, format!("cannot read file: {e}")))
}

/// True for text with nothing but blank lines and comments.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// The policy files of `dir`, sorted by name.
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Diagnostic::new(dir, None, format!("cannot read policy directory: {e}")))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| {
            Diagnostic::new(dir, None, format!("cannot read policy directory: {e}"))
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with("registry") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

pub(super) fn load(dir: &Path, registry_path: &Path) -> Result<PolicySet, Diagnostics> {
    let mut errs = Vec::new();
    let mut hashed: Vec<(String, Vec<u8>)> = Vec::new();

    let files = policy_files(dir).map_err(|d| Diagnostics(vec![d]))?;
    if files.is_empty() {
        errs.push(Diagnostic::new(
            dir,
            None,
            "no policy files (`*.yaml`) in the policy directory",
        ));
    }
    let mut parsed: Vec<(&Path, RegimeFile)> = Vec::new();
    for path in &files {
        let text = match read(path) {
            Ok(t) => t,
            Err(d) => {
                errs.push(d);
                continue;
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hashed.push((name, text.as_bytes().to_vec()));
        match parse_yaml::<RegimeFile>(path, &text) {
            Ok(spec) => parsed.push((path, spec)),
            Err(d) => errs.push(d),
        }
    }
    let views: Vec<(&Path, &RegimeFile)> = parsed.iter().map(|(p, s)| (*p, s)).collect();
    let catalogue = instrument::catalogue(&views, &mut errs);
    let regimes: Vec<Compiled> = parsed
        .iter()
        .map(|(path, spec)| compile_regime(path, spec, &catalogue, &mut errs))
        .collect();
    let mut instruments: Vec<Arc<Instrument>> = catalogue.values().cloned().collect();
    instruments.sort_by(|a, b| a.id.cmp(&b.id));

    let registry = match read(registry_path) {
        Ok(text) => {
            let name = registry_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            hashed.push((name, text.as_bytes().to_vec()));
            let spec = if is_blank_yaml(&text) {
                Ok(RegistryFile::default())
            } else {
                parse_yaml::<RegistryFile>(registry_path, &text)
            };
            match spec {
                Ok(spec) => compile_registry(registry_path, spec, &mut errs),
                Err(d) => {
                    errs.push(d);
                    HashMap::new()
                }
            }
        }
        Err(d) => {
            errs.push(d);
            HashMap::new()
        }
    };

    // The organisation overlay: `org/*.yaml` beside the law's files.
    let overlay = overlay::load_dir(dir, &regimes, &mut hashed, &mut errs);

    check_across(&regimes, &mut errs);
    let regimes: Vec<Regime> = regimes.into_iter().map(|c| c.regime).collect();
    let mut by_origin = vec![u16::MAX; 26 * 26].into_boxed_slice();
    for (i, r) in regimes.iter().enumerate() {
        for (slot, b) in by_origin.iter_mut().enumerate() {
            if member_at(&r.members, slot) && *b == u16::MAX {
                *b = u16::try_from(i).unwrap_or(u16::MAX);
            }
        }
    }

    if !errs.is_empty() {
        return Err(Diagnostics(errs));
    }
    Ok(PolicySet {
        version: version(hashed),
        regimes,
        by_origin,
        registry,
        overlay,
        instruments,
    })
}

fn member_at(set: &CountrySet, slot: usize) -> bool {
    set.0[slot / 64] & (1 << (slot % 64)) != 0
}

/// "sha256:" + hex SHA-256 over (name, bytes) of every file, sorted by name.
fn version(mut files: Vec<(String, Vec<u8>)>) -> Arc<str> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (name, bytes) in &files {
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name.as_bytes());
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    }
    Arc::from(format!("sha256:{}", hex::encode(ctx.finish().as_ref())))
}

/// A checked regime with what the checks across files need.
struct Compiled {
    regime: Regime,
    /// Rule ids with their lines.
    ids: Vec<(String, usize)>,
    /// Member countries with their lines.
    members: Vec<(Country, usize)>,
}

fn line_of<T>(s: &Spanned<T>) -> usize {
    usize::try_from(s.referenced.line()).unwrap_or(0)
}

fn opt_line(l: usize) -> Option<usize> {
    (l > 0).then_some(l)
}

/// Duplicate rule and regime ids across files, countries in two regimes.
fn check_across(regimes: &[Compiled], errs: &mut Vec<Diagnostic>) {
    let mut ids: HashMap<&str, (&Path, usize)> = HashMap::new();
    let mut regime_ids: HashMap<&str, &Path> = HashMap::new();
    let mut members: HashMap<Country, (&str, &Path, usize)> = HashMap::new();
    for c in regimes {
        let file = c.regime.file.as_path();
        if let Some(prev) = regime_ids.insert(&c.regime.id, file) {
            errs.push(Diagnostic::new(
                file,
                None,
                format!(
                    "duplicate regime id `{}` (also in {})",
                    c.regime.id,
                    prev.display()
                ),
            ));
        }
        for (id, line) in &c.ids {
            if let Some((pf, pl)) = ids.get(id.as_str()) {
                errs.push(Diagnostic::new(
                    file,
                    opt_line(*line),
                    format!(
                        "duplicate rule id `{id}` (first defined in {}:{pl})",
                        pf.display()
                    ),
                ));
            } else {
                ids.insert(id, (file, *line));
            }
        }
        for (country, line) in &c.members {
            match members.get(country) {
                Some((other, pf, pl)) if *other != &*c.regime.id => {
                    errs.push(Diagnostic::new(
                        file,
                        opt_line(*line),
                        format!(
                            "country `{country}` is a member of regime `{}` and of regime `{other}` ({}:{pl})",
                            c.regime.id,
                            pf.display()
                        ),
                    ));
                }
                Some(_) => errs.push(Diagnostic::new(
                    file,
                    opt_line(*line),
                    format!("country `{country}` is listed twice in `members`"),
                )),
                None => {
                    members.insert(*country, (&c.regime.id, file, *line));
                }
            }
        }
    }
}

fn compile_regime(
    path: &Path,
    spec: &RegimeFile,
    cat: &instrument::Catalogue,
    errs: &mut Vec<Diagnostic>,
) -> Compiled {
    let mut sink = Sink { file: path, errs };
    let statute = spec
        .instrument
        .as_ref()
        .and_then(|i| instrument::resolve(&mut sink, cat, i));
    let mut ids = Vec::new();
    let mut members = Vec::new();
    let mut member_set = CountrySet::default();
    for m in &spec.members {
        if let Some(c) = sink.country(m) {
            member_set.insert(c);
            members.push((c, line_of(m)));
        }
    }
    if spec.members.is_empty() {
        sink.at(
            &spec.id,
            format!("regime `{}` has no `members`", spec.id.value),
        );
    }
    let scope = sink.categories(&spec.scope_categories);
    if scope == 0 {
        sink.at(
            &spec.id,
            format!("regime `{}` has no `scope_categories`", spec.id.value),
        );
    }
    let mut fixed = |sink: &mut Sink<'_>, f: &FixedSpec, role: &str| {
        let mut rule = fixed(sink, f, role, &mut ids);
        rule.instrument = match &f.instrument {
            Some(i) => instrument::resolve(sink, cat, i),
            None => statute.clone(),
        };
        rule
    };
    let out_of_scope = fixed(&mut sink, &spec.out_of_scope, "out-of-scope");
    let purpose = spec
        .purpose
        .as_ref()
        .map(|p| fixed(&mut sink, p, "purpose"));
    let intra_bloc = fixed(&mut sink, &spec.intra_bloc, "intra-bloc");
    let default_deny = fixed(&mut sink, &spec.default_deny, "default");
    let rules = spec
        .rules
        .iter()
        .map(|r| {
            let mut rule = compile_rule(&mut sink, r, &mut ids);
            rule.instrument = match &r.instrument {
                Some(i) => instrument::resolve(&mut sink, cat, i),
                None => statute.clone(),
            };
            rule.scope = r
                .scope
                .as_ref()
                .map(|sc| instrument::scope(&mut sink, &r.id, sc));
            overlay::never_matches(&mut sink, r, &rule, &member_set, scope);
            rule
        })
        .collect();
    Compiled {
        regime: Regime {
            id: spec.id.value.as_str().into(),
            name: spec.name.as_str().into(),
            law: spec.law.as_str().into(),
            members: member_set,
            sources: spec.sources.clone(),
            unconfirmed: spec.unconfirmed.clone(),
            file: path.to_path_buf(),
            special_categories_article: spec.special_categories_article.as_deref().map(Into::into),
            scope,
            out_of_scope,
            purpose,
            intra_bloc,
            default_deny,
            rules,
        },
        ids,
        members,
    }
}

fn compile_rule(sink: &mut Sink<'_>, r: &RuleSpec, ids: &mut Vec<(String, usize)>) -> Rule {
    let id = &r.id.value;
    ids.push((id.clone(), line_of(&r.id)));
    let article: Box<str> = match &r.article {
        Some(a) if !a.value.trim().is_empty() => a.value.as_str().into(),
        Some(a) => {
            sink.at(a, format!("rule `{id}` has an empty `article`"));
            "".into()
        }
        None => {
            sink.at(&r.id, format!("rule `{id}` has no `article`"));
            "".into()
        }
    };
    let reason = match &r.reason {
        Some(s) => sink.template(s),
        None => {
            sink.at(&r.id, format!("rule `{id}` has no `reason`"));
            Template::default()
        }
    };
    let from = r
        .effective_from
        .as_ref()
        .and_then(|s| sink.date(s).map(|d| (s, d)));
    let until = r
        .effective_until
        .as_ref()
        .and_then(|s| sink.date(s).map(|d| (s, d)));
    sink.range(from, until, &format!("rule `{id}` effective_from"));
    let destinations = r.destinations.as_ref().map(|l| sink.countries(l));
    let categories_any = r.categories_any.as_ref().map(|l| sink.categories(l));
    let categories_only = r.categories_only.as_ref().map(|l| sink.categories(l));
    let purposes = r.purposes.as_ref().map(|l| sink.purposes(l));
    let requires_mechanism = r.requires_mechanism.as_ref().and_then(|s| sink.kind(s));
    let requires_derogation = r.requires_derogation.as_ref().and_then(|s| {
        let d = DEROGATIONS.iter().find(|d| **d == s.value).copied();
        if d.is_none() {
            sink.at(
                s,
                format!(
                    "unknown derogation `{}` (known: {})",
                    s.value.escape_default(),
                    DEROGATIONS.join(", ")
                ),
            );
        }
        d
    });
    let volume_bands = r.volume_bands.as_ref().map(|l| {
        l.iter()
            .fold(0u8, |m, b| match super::volume::Band::parse(&b.value) {
                Some(band) => m | band.bit(),
                None => {
                    sink.at(
                        b,
                        format!(
                            "unknown volume band `{}` (known: exempt, contract, assessment)",
                            b.value.escape_default()
                        ),
                    );
                    m
                }
            })
    });
    let mechanism_concluded_before = r.mechanism_concluded_before.as_ref().and_then(|s| {
        if r.requires_mechanism.is_none() {
            sink.at(
                s,
                format!("rule `{id}` has `mechanism_concluded_before` but no `requires_mechanism`"),
            );
        }
        sink.date(s)
    });
    if r.effect == Effect::Deny
        && (r.requires_mechanism.is_some() || r.requires_derogation.is_some())
    {
        sink.at(
            &r.id,
            format!("deny rule `{id}` cannot require a mechanism or a derogation"),
        );
    }
    let transform = r
        .transform
        .as_ref()
        .and_then(|t| compile_transform(sink, id, r.effect, t));
    Rule {
        transform,
        id: id.as_str().into(),
        effect: r.effect,
        article,
        instrument: None,
        scope: None,
        reason,
        effective_from: from.map(|(_, d)| d),
        effective_until: until.map(|(_, d)| d),
        destinations,
        categories_any,
        categories_only,
        purposes,
        requires_mechanism,
        requires_derogation,
        mechanism_concluded_before,
        volume_bands,
    }
}

/// A rule's `transform:` map, checked: an allow rule, known kinds (not `non-personal`) and
/// methods.
fn compile_transform(
    sink: &mut Sink<'_>,
    id: &str,
    effect: Effect,
    t: &Spanned<std::collections::BTreeMap<String, crate::policy::schema::S>>,
) -> Option<Arc<crate::transform::Requirement>> {
    use crate::catalog::schema::ColumnKind;
    use crate::transform::Method;
    if effect != Effect::Allow {
        sink.at(
            t,
            format!("deny rule `{id}` cannot require a transformation"),
        );
        return None;
    }
    if t.value.is_empty() {
        sink.at(t, format!("rule `{id}` has an empty `transform`"));
        return None;
    }
    let mut methods = Vec::new();
    for (kind, method) in &t.value {
        let k = match ColumnKind::parse(kind) {
            Some(ColumnKind::NonPersonal) | None => {
                sink.at(
                    method,
                    format!(
                        "unknown column kind `{}` in the transform of rule `{id}` (known: identifier, quasi-identifier, special, free-text)",
                        kind.escape_default()
                    ),
                );
                continue;
            }
            Some(k) => k,
        };
        let m = match method.value.as_str() {
            "drop" => Method::Drop,
            "pseudonymise" => Method::Pseudonymise,
            "generalise" => Method::Generalise,
            "redact" => Method::Redact,
            other => {
                sink.at(
                    method,
                    format!(
                        "unknown transformation `{}` (known: drop, pseudonymise, generalise, redact)",
                        other.escape_default()
                    ),
                );
                continue;
            }
        };
        methods.push((k, m));
    }
    methods.sort();
    Some(Arc::new(crate::transform::Requirement { methods }))
}

fn fixed(
    sink: &mut Sink<'_>,
    spec: &FixedSpec,
    role: &str,
    ids: &mut Vec<(String, usize)>,
) -> FixedRule {
    let line = usize::try_from(spec.id.referenced.line()).unwrap_or(0);
    ids.push((spec.id.value.clone(), line));
    let article = match &spec.article {
        Some(a) if !a.value.trim().is_empty() => a.value.as_str().into(),
        Some(a) => {
            sink.at(
                a,
                format!("{role} rule `{}` has an empty `article`", spec.id.value),
            );
            "".into()
        }
        None => {
            sink.at(
                &spec.id,
                format!("{role} rule `{}` has no `article`", spec.id.value),
            );
            "".into()
        }
    };
    let reason = match &spec.reason {
        Some(r) => sink.template(r),
        None => {
            sink.at(
                &spec.id,
                format!("{role} rule `{}` has no `reason`", spec.id.value),
            );
            Template::default()
        }
    };
    FixedRule {
        id: spec.id.value.as_str().into(),
        article,
        instrument: None,
        reason,
    }
}

mod instrument;
mod overlay;
mod registry;

use registry::compile_registry;
