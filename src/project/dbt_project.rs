//! `dbt_project.yml`: paths, vars, and the folder-scoped `models:` / `seeds:`
//! config trees, applied the way dbt applies them (general to specific, tags
//! additive, `+` prefix optional).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::NodeConfig;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct DbtProjectFile {
    pub name: String,
    pub profile: Option<String>,
    #[serde(alias = "source-paths")]
    pub model_paths: Option<Vec<String>>,
    #[serde(alias = "data-paths")]
    pub seed_paths: Option<Vec<String>>,
    pub test_paths: Option<Vec<String>>,
    pub macro_paths: Option<Vec<String>>,
    pub snapshot_paths: Option<Vec<String>>,
    pub function_paths: Option<Vec<String>>,
    pub packages_install_path: Option<String>,
    #[serde(default)]
    pub vars: serde_json::Map<String, Value>,
    #[serde(default)]
    pub models: Value,
    #[serde(default)]
    pub seeds: Value,
    #[serde(default, alias = "data_tests")]
    pub tests: Value,
    #[serde(default)]
    pub on_run_start: Value,
    #[serde(default)]
    pub on_run_end: Value,
    #[serde(default)]
    pub quoting: super::Quoting,
}

pub(super) fn read(root: &Path) -> Result<DbtProjectFile> {
    let path = root.join("dbt_project.yml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (is --project-dir a dbt project?)", path.display()))?;
    let yaml: serde_norway::Value =
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let json = serde_json::to_value(yaml).with_context(|| format!("{}: unsupported YAML", path.display()))?;
    let file: DbtProjectFile =
        serde_json::from_value(json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if file.name.trim().is_empty() {
        bail!("{}: 'name' is empty", path.display());
    }
    Ok(file)
}

impl DbtProjectFile {
    /// Global vars plus the ones scoped to this project.
    pub fn project_vars(&self) -> BTreeMap<String, Value> {
        let mut vars = BTreeMap::new();
        for (k, v) in &self.vars {
            if k == &self.name {
                continue;
            }
            vars.insert(k.clone(), v.clone());
        }
        if let Some(Value::Object(scoped)) = self.vars.get(&self.name) {
            for (k, v) in scoped {
                vars.insert(k.clone(), v.clone());
            }
        }
        vars
    }
}

/// Config keys dbt accepts without the `+` prefix in a config tree.
const KNOWN_KEYS: &[&str] = &[
    "materialized",
    "schema",
    "alias",
    "tags",
    "enabled",
    "unique_key",
    "incremental_strategy",
    "severity",
    "column_types",
    "full_refresh",
    "database",
    "meta",
    "docs",
    "persist_docs",
    "on_schema_change",
    "quote_columns",
    "pre-hook",
    "post-hook",
    "grants",
    "contract",
    "external_location",
    "store_failures",
    "store_failures_as",
    "where",
    "limit",
    "error_if",
    "warn_if",
    "fail_calc",
    "incremental_predicates",
    "merge_exclude_columns",
    "merge_update_columns",
    "sql_header",
    "delimiter",
];

/// Every config key dbt knows (for "did you mean": a key outside this list is
/// a typo or another tool's, and is ignored with a warning).
const DBT_KEYS: &[&str] = &[
    "materialized", "schema", "alias", "tags", "tag", "enabled", "unique_key", "incremental_strategy", "severity", "column_types",
    "full_refresh", "database", "meta", "docs", "persist_docs", "on_schema_change", "quote_columns", "pre-hook", "post-hook", "pre_hook",
    "post_hook", "grants", "contract", "external_location", "access", "group", "labels", "cluster_by", "partition_by", "sql_header",
    "quoting", "identifier", "where", "limit", "error_if", "warn_if", "store_failures", "store_failures_as", "fail_calc", "snowflake_warehouse",
    "transient", "copy_grants", "incremental_predicates", "merge_exclude_columns", "merge_update_columns", "event_time", "batch_size",
    "lookback", "begin", "concurrent_batches", "delimiter", "docs", "packages", "query_tag", "secure", "automatic_clustering", "require_partition_filter",
    "partition_expiration_days", "kms_key_name", "hours_to_expiration", "description", "options", "format", "location", "unlogged",
    "indexes", "deprecation_date", "latest_version", "strategy", "updated_at", "check_cols", "target_schema", "target_database",
    "snapshot_meta_column_names", "hard_deletes", "invalidate_hard_deletes", "dbt_valid_to_current", "plugin", "glue_register",
    "file_format", "options", "partition_expiration", "table_type", "enable_refresh", "refresh_interval_minutes",
];

/// Warn once per place and key about a config key dbt does not know.
fn warn_unknown(key: &str, origin: &str) {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<(String, String)>>> = std::sync::OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if seen.lock().expect("warnings poisoned").insert((origin.to_string(), key.to_string())) {
        eprintln!("airlock: warning: {origin}: unknown config key '{key}'{}; it is ignored", crate::suggest::hint(key, DBT_KEYS.iter().copied()));
    }
}

/// Hooks: a string, a list of strings, or dicts with `sql:` (dbt's forms).
fn as_hooks(key: &str, value: &Value, origin: &str) -> Result<Vec<String>> {
    match value {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Object(map) => match map.get("sql") {
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            _ => bail!("{origin}: config '{key}' as a mapping needs 'sql:'"),
        },
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(as_hooks(key, item, origin)?);
            }
            Ok(out)
        }
        other => bail!("{origin}: config '{key}' must be SQL text or a list of it, got {other}"),
    }
}

/// `on-run-start` / `on-run-end` of `dbt_project.yml`.
pub(super) fn run_hooks(value: &Value, key: &str) -> Result<Vec<String>> {
    as_hooks(key, value, "dbt_project.yml")
}

/// Apply the config tree to a node whose fully qualified name is `fqn`
/// (project, folders..., node name).
pub(super) fn apply_tree(tree: &Value, fqn: &[String], cfg: &mut NodeConfig, origin: &str) -> Result<()> {
    let mut level = tree;
    apply_level(level, cfg, origin)?;
    for part in fqn {
        match level.get(part.as_str()) {
            Some(next @ Value::Object(_)) => {
                level = next;
                apply_level(level, cfg, origin)?;
            }
            _ => break,
        }
    }
    Ok(())
}

fn apply_level(level: &Value, cfg: &mut NodeConfig, origin: &str) -> Result<()> {
    let Value::Object(map) = level else { return Ok(()) };
    for (key, value) in map {
        if let Some(stripped) = key.strip_prefix('+') {
            apply_config(cfg, stripped, value, origin)?;
        } else if KNOWN_KEYS.contains(&key.as_str()) && !value.is_object() || key == "column_types" || key == "meta" {
            apply_config(cfg, key, value, origin)?;
        }
    }
    Ok(())
}

fn as_string(key: &str, value: &Value, origin: &str) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(_) | Value::Number(_) => Ok(Some(value.to_string())),
        _ => bail!("{origin}: config '{key}' must be a string, got {value}"),
    }
}

fn as_list(key: &str, value: &Value, origin: &str) -> Result<Vec<String>> {
    match value {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => bail!("{origin}: config '{key}' must list strings, got {other}"),
            })
            .collect(),
        other => bail!("{origin}: config '{key}' must be a string or a list, got {other}"),
    }
}

/// Apply one config key; shared by the project tree, YAML `config:` blocks and
/// `config()` calls in SQL.
pub(crate) fn apply_config(cfg: &mut NodeConfig, key: &str, value: &Value, origin: &str) -> Result<()> {
    match key {
        "materialized" => cfg.materialized = as_string(key, value, origin)?,
        "schema" => cfg.schema = as_string(key, value, origin)?,
        "alias" => cfg.alias = as_string(key, value, origin)?,
        "tags" | "tag" => cfg.tags.extend(as_list(key, value, origin)?),
        "enabled" => match value {
            Value::Bool(b) => cfg.enabled = Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
                cfg.enabled = Some(s.eq_ignore_ascii_case("true"))
            }
            other => bail!("{origin}: config 'enabled' must be true or false, got {other}"),
        },
        "full_refresh" => match value {
            Value::Bool(b) => cfg.full_refresh = Some(*b),
            Value::Null => cfg.full_refresh = None,
            other => bail!("{origin}: config 'full_refresh' must be true or false, got {other}"),
        },
        "unique_key" => {
            // an empty key is a mistake dbt does not catch ('' and [] append
            // every run; ['id', ''] fails in the warehouse): refuse it here
            let empty = match value {
                Value::String(s) => s.trim().is_empty(),
                Value::Array(items) => items.is_empty() || items.iter().any(|v| v.as_str().is_some_and(|s| s.trim().is_empty())),
                _ => false,
            };
            if empty {
                bail!("{origin}: config 'unique_key' is empty ({value}); name the key column(s), or remove unique_key to append");
            }
            let keys = as_list(key, value, origin)?;
            cfg.unique_key = if keys.is_empty() { None } else { Some(keys) };
        }
        "where" => cfg.where_ = as_string(key, value, origin)?.filter(|w| !w.trim().is_empty()),
        "limit" => {
            cfg.limit = match value {
                Value::Null => None,
                Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
                Value::String(s) if s.trim().parse::<u64>().is_ok() => s.trim().parse().ok(),
                other => bail!("{origin}: config 'limit' must be a whole number, got {other}"),
            }
        }
        "error_if" | "warn_if" => {
            let cond = as_string(key, value, origin)?;
            if let Some(c) = &cond {
                crate::gate::Condition::parse(c).map_err(|e| anyhow::anyhow!("{origin}: config '{key}': {e}"))?;
            }
            if key == "error_if" {
                cfg.error_if = cond;
            } else {
                cfg.warn_if = cond;
            }
        }
        k if super::refuse::REFUSED_KEYS.contains(&k) => {
            cfg.refused.insert(k.to_string(), (value.clone(), origin.to_string()));
        }
        "incremental_strategy" => cfg.incremental_strategy = as_string(key, value, origin)?,
        "severity" => {
            let sev = as_string(key, value, origin)?;
            if let Some(s) = &sev {
                if !s.eq_ignore_ascii_case("warn") && !s.eq_ignore_ascii_case("error") {
                    bail!("{origin}: severity must be 'warn' or 'error', got '{s}'");
                }
            }
            cfg.severity = sev;
        }
        "column_types" => match value {
            Value::Object(map) => {
                for (col, ty) in map {
                    if let Some(ty) = as_string(key, ty, origin)? {
                        cfg.column_types.insert(col.clone(), ty);
                    }
                }
            }
            Value::Null => {}
            other => bail!("{origin}: config 'column_types' must map columns to types, got {other}"),
        },
        "external_location" => cfg.external_location = as_string(key, value, origin)?,
        // hooks accumulate from the project down to the model, as in dbt
        "pre-hook" | "pre_hook" => cfg.pre_hook.extend(as_hooks(key, value, origin)?),
        "post-hook" | "post_hook" => cfg.post_hook.extend(as_hooks(key, value, origin)?),
        "meta" => {
            if let Some(loc) = value.get("external_location") {
                cfg.external_location = as_string("external_location", loc, origin)?;
            }
        }
        // accepted for compatibility; they do not change what airlock builds
        k if DBT_KEYS.contains(&k) => {}
        other => warn_unknown(other, origin),
    }
    Ok(())
}
