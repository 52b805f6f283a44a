//! Publish strategies as data. Each strategy is a TOML file (built-ins in
//! `strategies/`, embedded; a project's `strategies/` folder or
//! `--strategies-dir` adds or overrides) that names the primitive used at each
//! step (stage, build, publish), its parameters, the warehouses that can carry
//! it out (or why not), and the SQL of its primitives as minijinja templates per
//! dialect. The Rust side offers the primitives; see `strategies/README.md`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::warehouse::Dialect;

const BUILT_IN: &[(&str, &str)] = &[
    ("swap", include_str!("../strategies/swap.toml")),
    ("clone-back", include_str!("../strategies/clone-back.toml")),
    ("wap", include_str!("../strategies/wap.toml")),
    ("wac", include_str!("../strategies/wac.toml")),
    ("mirror", include_str!("../strategies/mirror.toml")),
];

/// How the audit location starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// empty
    None,
    /// a copy (clone) of prod: unselected models are read from it, incremental models build on it
    CloneProd,
}

/// What is built into the audit location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildScope {
    /// the selection (default: everything but the raw mirror)
    Selection,
    /// only the mirror models (`params.tag`) and their tests
    Mirror,
}

/// How the audited result becomes prod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Publish {
    /// exchange audit and prod locations (every object of the project)
    Swap,
    /// clone the staging location back over prod (every object of the project)
    CloneBack,
    /// rebuild the top-level models (`params.publish_select`) in prod
    Rebuild,
    /// clone the tagged tables (`params.tags`) built in this run into prod
    CloneTagged,
    /// replace each built object in prod
    Replace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub stage: Stage,
    pub build: BuildScope,
    pub publish: Publish,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    #[serde(default)]
    pub atomic: BTreeMap<String, bool>,
    #[serde(default)]
    pub incremental_safe: bool,
    #[serde(default)]
    pub rollback: String,
    #[serde(default)]
    pub extra_storage: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Support {
    Yes(bool),
    No(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub support: BTreeMap<String, Support>,
    #[serde(default)]
    pub facts: Facts,
    #[serde(default)]
    pub params: toml::Table,
    pub steps: Steps,
    /// dialect -> template name -> SQL template
    #[serde(default)]
    pub sql: BTreeMap<String, BTreeMap<String, String>>,
    /// where it came from: "built-in" or a file path
    #[serde(skip)]
    pub origin: String,
    /// a project strategy that replaces the built-in of the same name
    #[serde(skip)]
    pub shadows_built_in: bool,
    /// `sql`, compiled at the first render
    #[serde(skip)]
    compiled: Compiled,
}

/// A strategy's templates compiled once (a plan of 15,000 models renders
/// them about 100,000 times), shared by its clones. The templates never
/// change once parsed.
#[derive(Clone, Default)]
struct Compiled(std::sync::Arc<std::sync::OnceLock<Templates>>);

struct Templates {
    env: minijinja::Environment<'static>,
    /// dialect -> name -> the template as text and variables, where it is
    /// nothing else (almost every strategy template)
    plain: BTreeMap<String, BTreeMap<String, Vec<Part>>>,
}

/// A piece of a template that only substitutes variables.
#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    Var(String),
}

/// `body` as text and `{{ name }}` substitutions, if that is all it is: such
/// a template renders by concatenation to exactly what minijinja renders
/// (strings go in as they are; no auto-escaping for these names). Anything
/// else — a block or comment tag, whitespace control, a filter or
/// expression, a literal such as `{{ none }}`, a trailing newline (which
/// minijinja drops) — is left to minijinja.
fn plain_parts(body: &str) -> Option<Vec<Part>> {
    if body.contains("{%") || body.contains("{#") || body.ends_with('\n') || body.ends_with('\r') {
        return None;
    }
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let name = after[..close].trim_matches(|c| c == ' ' || c == '\t');
        let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident || matches!(name, "true" | "false" | "none" | "True" | "False" | "None") {
            return None;
        }
        parts.push(Part::Var(name.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Some(parts)
}

/// `parts` with `vars` substituted; None where a variable is not given
/// (minijinja then reports it, as it does for every template).
fn substitute(parts: &[Part], vars: &[(&str, &str)]) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var(v) => out.push_str(vars.iter().find(|(k, _)| k == v)?.1),
        }
    }
    Some(out)
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "compiled" } else { "not compiled yet" })
    }
}

/// SQL template names the primitives use, and what they mean.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("clone_table", "copy/clone table {{ source }} to {{ target }} (replacing it)"),
    ("snapshot_table", "keep table {{ source }} as {{ target }} before it is replaced, expiring after {{ expiration_days }} days (\"0\": never)"),
    ("rebuild_table", "build {{ target }} from the SELECT {{ sql }}"),
    ("clone_location", "clone location {{ source }} to {{ target }}"),
    ("snapshot_location", "keep location {{ source }} as {{ target }}"),
    ("swap_location", "exchange {{ audit }} and {{ prod }}"),
    ("keep_demoted", "after a swap, rename the demoted {{ audit }} to {{ backup }}"),
    ("clone_database", "clone database {{ source }} to {{ target }} (audit_database)"),
    ("swap_database", "exchange databases {{ audit }} and {{ prod }} (audit_database)"),
    ("keep_demoted_database", "after a database swap, rename the demoted {{ audit }} to {{ backup }}"),
];

/// Days a kept table snapshot lives when airlock.toml does not say.
pub const DEFAULT_SNAPSHOT_EXPIRATION_DAYS: u32 = 30;

/// The variables each template is rendered with.
fn template_vars(name: &str) -> &'static [&'static str] {
    match name {
        "snapshot_table" => &["source", "target", "expiration_days"],
        "clone_table" | "clone_location" | "snapshot_location" | "clone_database" => &["source", "target"],
        "rebuild_table" => &["target", "sql"],
        "swap_location" | "swap_database" => &["audit", "prod"],
        "keep_demoted" | "keep_demoted_database" => &["audit", "backup"],
        _ => &[],
    }
}

/// Templates a dialect must have for these steps: each inner list is a set
/// of alternatives, one of which must be complete. Rollback restores object
/// by object, so every strategy needs `clone_table` and `snapshot_table`.
fn required_templates(steps: &Steps) -> Vec<Vec<&'static [&'static str]>> {
    let per_object: &'static [&'static str] = &["clone_table", "snapshot_table"];
    let mut need: Vec<Vec<&'static [&'static str]>> = vec![vec![per_object]];
    if steps.stage == Stage::CloneProd {
        need.push(vec![&["clone_location"], &["clone_table"]]);
    }
    match steps.publish {
        Publish::Swap => need.push(vec![&["swap_location", "keep_demoted"], per_object]),
        Publish::CloneBack => need.push(vec![&["clone_location", "snapshot_location"], per_object]),
        Publish::Rebuild => need.push(vec![&["rebuild_table"]]),
        Publish::CloneTagged | Publish::Replace => {}
    }
    need
}

impl Strategy {
    pub fn parse(text: &str, origin: &str) -> Result<Strategy> {
        let mut s: Strategy = toml::from_str(text).map_err(|e| anyhow!("{origin}: {}", e.to_string().trim_end()))?;
        s.origin = origin.to_string();
        let env = strict_env();
        for (dialect, templates) in &s.sql {
            if Dialect::parse(dialect).is_none() {
                bail!("{origin}: [sql.{dialect}]: unknown dialect (duckdb, snowflake, bigquery)");
            }
            for (name, body) in templates {
                if !TEMPLATES.iter().any(|(t, _)| t == name) {
                    let names: Vec<&str> = TEMPLATES.iter().map(|(t, _)| *t).collect();
                    bail!("{origin}: [sql.{dialect}] {name}: unknown template{}; known: {}", crate::suggest::hint(name, names.iter().copied()), names.join(", "));
                }
                let tmpl = env.template_from_str(body).map_err(|e| anyhow!("{origin}: [sql.{dialect}] {name}: {e}"))?;
                // a typo such as {{ tagret }} is an error now, not empty SQL at publish time
                let known = template_vars(name);
                let mut unknown: Vec<String> = tmpl.undeclared_variables(false).into_iter().filter(|v| !known.contains(&v.as_str())).collect();
                unknown.sort();
                if let Some(var) = unknown.first() {
                    bail!(
                        "{origin}: [sql.{dialect}] {name}: undefined variable '{var}'{}; this template knows {}",
                        crate::suggest::hint(var, known.iter().copied()),
                        known.iter().map(|k| format!("{{{{ {k} }}}}")).collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
        for (w, support) in &s.support {
            let Some(dialect) = Dialect::parse(w) else {
                bail!("{origin}: [support] {w}: unknown warehouse (duckdb, snowflake, bigquery)");
            };
            if matches!(support, Support::Yes(true)) {
                for alternatives in required_templates(&s.steps) {
                    if !alternatives.iter().any(|set| set.iter().all(|t| s.template(dialect, t).is_some())) {
                        let wanted = alternatives.iter().map(|set| set.join(" + ")).collect::<Vec<_>>().join(" or ");
                        bail!("{origin}: [support] {w} = true, but [sql.{w}] lacks {wanted}, which its steps need on {}", dialect.title());
                    }
                }
            }
        }
        Ok(s)
    }

    /// Refuse before anything is built when the warehouse cannot carry this out.
    pub fn check_support(&self, dialect: Dialect) -> Result<()> {
        match self.support.get(dialect.name()) {
            Some(Support::Yes(true)) => Ok(()),
            Some(Support::No(reason)) => bail!("strategy '{}' cannot run on {}: {reason}", self.name, dialect.title()),
            Some(Support::Yes(false)) | None => bail!("strategy '{}' does not support {} (its file declares no [support] for it)", self.name, dialect.title()),
        }
    }

    pub fn supports(&self, dialect: Dialect) -> bool {
        self.check_support(dialect).is_ok()
    }

    pub fn atomic(&self, dialect: Dialect) -> bool {
        self.facts.atomic.get(dialect.name()).copied().unwrap_or(false)
    }

    /// Days after which a kept snapshot expires (`[params]
    /// snapshot_expiration_days`, set from airlock.toml); 0: never.
    pub fn snapshot_expiration_days(&self) -> u32 {
        self.params.get("snapshot_expiration_days").and_then(|v| v.as_integer()).map(|d| d.clamp(0, u32::MAX as i64) as u32).unwrap_or(DEFAULT_SNAPSHOT_EXPIRATION_DAYS)
    }

    pub fn keep(&self) -> Option<usize> {
        self.params.get("keep").and_then(|v| v.as_integer()).map(|k| k.max(1) as usize)
    }

    pub fn param_str(&self, key: &str) -> Option<String> {
        self.params.get(key).and_then(|v| v.as_str()).map(str::to_string)
    }

    pub fn param_list(&self, key: &str) -> Vec<String> {
        match self.params.get(key) {
            Some(toml::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(toml::Value::String(s)) => vec![s.clone()],
            _ => vec![],
        }
    }

    /// Whether this strategy can publish from an audit database
    /// (`audit_database`): a swap with the database templates.
    pub fn check_audit_database(&self, dialect: Dialect) -> Result<()> {
        for name in ["clone_database", "swap_database", "keep_demoted_database"] {
            if self.steps.publish != Publish::Swap || self.template(dialect, name).is_none() {
                anyhow::bail!(
                    "strategy '{}' cannot publish from an audit database (audit_database in airlock.toml): only a swap with `{name}` for {} can; \
                     use audit_schema for the other strategies",
                    self.name,
                    dialect.title()
                );
            }
        }
        Ok(())
    }

    pub fn template(&self, dialect: Dialect, name: &str) -> Option<&str> {
        self.sql.get(dialect.name()).and_then(|t| t.get(name)).map(String::as_str)
    }

    /// Render one of this strategy's SQL templates.
    pub fn render(&self, dialect: Dialect, name: &str, vars: &[(&str, &str)]) -> Result<String> {
        let body = self
            .template(dialect, name)
            .ok_or_else(|| anyhow!("strategy '{}' ({}) has no [sql.{}] {name} template", self.name, self.origin, dialect.name()))?;
        let compiled = self.compiled.0.get_or_init(|| {
            let mut env = strict_env();
            let mut plain: BTreeMap<String, BTreeMap<String, Vec<Part>>> = BTreeMap::new();
            for (dialect, templates) in &self.sql {
                for (name, body) in templates {
                    // parse() compiled each once already: this cannot fail
                    let _ = env.add_template_owned(format!("{dialect}/{name}"), body.clone());
                    if let Some(parts) = plain_parts(body) {
                        plain.entry(dialect.clone()).or_default().insert(name.clone(), parts);
                    }
                }
            }
            Templates { env, plain }
        });
        let fast = compiled.plain.get(dialect.name()).and_then(|t| t.get(name)).and_then(|parts| substitute(parts, vars));
        if let Some(sql) = fast {
            return Ok(sql);
        }
        let env = &compiled.env;
        let ctx: BTreeMap<&str, &str> = vars.iter().copied().collect();
        let rendered = match env.get_template(&format!("{}/{name}", dialect.name())) {
            Ok(template) => template.render(ctx),
            Err(_) => env.render_str(body, ctx),
        };
        rendered.with_context(|| format!("strategy '{}': rendering [sql.{}] {name}", self.name, dialect.name()))
    }
}

/// Templates render with strict undefined variables: a missing value is an
/// error, never empty SQL.
fn strict_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// Built-in strategies plus a project's own.
#[derive(Debug, Clone)]
pub struct Registry {
    pub strategies: BTreeMap<String, Strategy>,
}

impl Registry {
    /// Built-ins, then `dir` (a project's `strategies/` or `--strategies-dir`): a
    /// file there with a built-in's name overrides it.
    pub fn load(dir: Option<&Path>) -> Result<Registry> {
        let mut strategies = BTreeMap::new();
        for (name, text) in BUILT_IN {
            let s = Strategy::parse(text, "built-in")?;
            debug_assert_eq!(&s.name, name);
            strategies.insert(s.name.clone(), s);
        }
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for path in files {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let mut s = Strategy::parse(&text, &path.display().to_string())?;
                s.shadows_built_in = BUILT_IN.iter().any(|(name, _)| *name == s.name);
                strategies.insert(s.name.clone(), s);
            }
        }
        Ok(Registry { strategies })
    }

    /// airlock.toml's settings that strategies render with.
    pub fn apply(mut self, deploy: &crate::config::DeploySettings) -> Registry {
        if let Some(days) = deploy.snapshot_expiration_days {
            for s in self.strategies.values_mut() {
                s.params.insert("snapshot_expiration_days".into(), toml::Value::Integer(days.into()));
            }
        }
        self
    }

    pub fn get(&self, name: &str) -> Result<&Strategy> {
        self.strategies.get(name).ok_or_else(|| {
            anyhow!(
                "unknown strategy '{name}'{}; available: {}",
                crate::suggest::hint(name, self.strategies.keys().map(String::as_str)),
                self.strategies.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What minijinja renders for `body` with `vars`.
    fn by_minijinja(body: &str, vars: &[(&str, &str)]) -> Result<String, minijinja::Error> {
        strict_env().render_str(body, vars.iter().copied().collect::<BTreeMap<&str, &str>>())
    }

    #[test]
    fn plain_templates_render_exactly_as_minijinja_does() {
        // values with quotes, braces, Jinja syntax, newlines and non-ASCII go in as they are
        let values = ["\"audit\".\"orders\"", "{{ target }} {% if x %}", "a'b\nc\\d", "ünï €", ""];
        let mut fast = 0;
        for strategy in Registry::load(None).unwrap().strategies.values() {
            for (dialect, templates) in &strategy.sql {
                for (name, body) in templates {
                    for value in values {
                        let vars: Vec<(&str, &str)> = template_vars(name).iter().map(|v| (*v, if *v == "expiration_days" { "7" } else { value })).collect();
                        let want = by_minijinja(body, &vars).unwrap();
                        if let Some(parts) = plain_parts(body) {
                            fast += 1;
                            assert_eq!(substitute(&parts, &vars).as_deref(), Some(want.as_str()), "{}: [sql.{dialect}] {name}", strategy.name);
                        }
                        let d = match dialect.as_str() {
                            "duckdb" => Dialect::DuckDb,
                            "snowflake" => Dialect::Snowflake,
                            _ => Dialect::BigQuery,
                        };
                        assert_eq!(strategy.render(d, name, &vars).unwrap(), want, "{}: [sql.{dialect}] {name}", strategy.name);
                    }
                }
            }
        }
        // most built-in templates take the plain path; BigQuery's snapshot (an {% if %}) does not
        assert!(fast > 100, "{fast}");
        let wac = Registry::load(None).unwrap().get("wac").unwrap().clone();
        assert!(plain_parts(wac.template(Dialect::BigQuery, "snapshot_table").unwrap()).is_none());
        assert!(plain_parts(wac.template(Dialect::DuckDb, "clone_table").unwrap()).is_some());
    }

    #[test]
    fn only_plain_substitution_skips_minijinja() {
        let vars = [("x", "X"), ("y", "Y")];
        for body in ["a {{ x }} b", "{{x}}", "{{\tx }}{{ y }}", "x }} y {{ x }}", "{ {{ x }} }", "no variables", ""] {
            let parts = plain_parts(body).unwrap_or_else(|| panic!("{body:?} is plain"));
            assert_eq!(substitute(&parts, &vars).unwrap(), by_minijinja(body, &vars).unwrap(), "{body:?}");
        }
        for body in ["{{ true }}", "{{ none }}", "{{ x|upper }}", "{{- x }}", "{{ x -}}", "{{ x ~ y }}", "{{ x.y }}", "a\n", "{{ x }}\r\n", "{% if x %}y{% endif %}", "{# c #}{{ x }}", "{{ x"] {
            assert!(plain_parts(body).is_none(), "{body:?} is left to minijinja");
        }
        // a variable not given is minijinja's strict error, as before
        let text = "name = \"x\"\ndescription = \"d\"\n[support]\nduckdb = true\n[steps]\nstage = \"none\"\nbuild = \"selection\"\npublish = \"replace\"\n[sql.duckdb]\nclone_table = \"CREATE TABLE {{ target }} AS SELECT * FROM {{ source }}\"\nsnapshot_table = \"x\"\n";
        let strategy = Strategy::parse(text, "x.toml").unwrap();
        let err = format!("{:#}", strategy.render(Dialect::DuckDb, "clone_table", &[("target", "t")]).unwrap_err());
        assert!(err.contains("rendering [sql.duckdb] clone_table") && err.contains("undefined"), "{err}");
        assert_eq!(strategy.render(Dialect::DuckDb, "clone_table", &[("target", "t"), ("source", "s")]).unwrap(), "CREATE TABLE t AS SELECT * FROM s");
    }

    #[test]
    fn built_ins_load_and_swap_is_refused_on_bigquery() {
        let r = Registry::load(None).unwrap();
        assert_eq!(r.strategies.len(), 5);
        let err = r.get("swap").unwrap().check_support(Dialect::BigQuery).unwrap_err().to_string();
        assert_eq!(err, "strategy 'swap' cannot run on BigQuery: BigQuery cannot rename or swap datasets; use wac or wap");
        assert!(r.get("wac").unwrap().check_support(Dialect::BigQuery).is_ok());
        assert!(r.get("swapp").unwrap_err().to_string().contains("did you mean 'swap'?"));
    }

    #[test]
    fn an_undefined_template_variable_is_refused_at_load() {
        let text = "name = \"x\"\ndescription = \"d\"\n[support]\nduckdb = true\n[steps]\nstage = \"none\"\nbuild = \"selection\"\npublish = \"replace\"\n[sql.duckdb]\nclone_table = \"CREATE TABLE {{ tagret }} AS SELECT * FROM {{ source }}\"\nsnapshot_table = \"x\"\n";
        let err = Strategy::parse(text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("x.toml: [sql.duckdb] clone_table: undefined variable 'tagret' (did you mean 'target'?)"), "{err}");
    }

    #[test]
    fn a_supported_dialect_needs_every_template_its_steps_use() {
        let text = "name = \"x\"\ndescription = \"d\"\n[support]\nduckdb = true\n[steps]\nstage = \"none\"\nbuild = \"selection\"\npublish = \"rebuild\"\n[sql.duckdb]\nclone_table = \"x\"\nsnapshot_table = \"y\"\n";
        let err = Strategy::parse(text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("[support] duckdb = true, but [sql.duckdb] lacks rebuild_table"), "{err}");
    }

    #[test]
    fn an_unknown_template_is_named() {
        let text = "name = \"x\"\ndescription = \"d\"\n[steps]\nstage = \"none\"\nbuild = \"selection\"\npublish = \"replace\"\n[sql.duckdb]\nclone_tabel = \"x\"\n";
        let err = Strategy::parse(text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("clone_tabel: unknown template (did you mean 'clone_table'?)"), "{err}");
    }
}
