//! YAML property files (`schema.yml`, `sources.yml`): sources, model and seed
//! properties, and the generic tests declared on columns and models.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
pub(super) struct PropertiesFile {
    #[serde(default)]
    pub sources: Vec<SourceDef>,
    #[serde(default)]
    pub models: Vec<ResourceProps>,
    #[serde(default)]
    pub seeds: Vec<ResourceProps>,
    /// refused at load (see refuse.rs): never ignored
    #[serde(default)]
    pub snapshots: Vec<Value>,
    #[serde(default)]
    pub unit_tests: Vec<Value>,
    #[serde(default)]
    pub functions: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SourceDef {
    pub name: String,
    pub schema: Option<String>,
    pub database: Option<String>,
    #[serde(default)]
    pub meta: Value,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub tables: Vec<SourceTable>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SourceTable {
    pub name: String,
    pub identifier: Option<String>,
    #[serde(default)]
    pub meta: Value,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub columns: Vec<ColumnProps>,
    #[serde(flatten)]
    pub tests: TestLists,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResourceProps {
    pub name: String,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub tags: Value,
    #[serde(default)]
    pub columns: Vec<ColumnProps>,
    #[serde(flatten)]
    pub tests: TestLists,
    /// model versions and constraints: refused at load
    #[serde(default)]
    pub versions: Value,
    #[serde(default)]
    pub latest_version: Value,
    #[serde(default)]
    pub constraints: Value,
}

#[derive(Debug, Deserialize)]
pub(super) struct ColumnProps {
    pub name: String,
    #[serde(default)]
    pub constraints: Value,
    #[serde(flatten)]
    pub tests: TestLists,
}

/// dbt accepts both `tests:` and (since 1.8) `data_tests:`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TestLists {
    #[serde(default)]
    tests: Vec<Value>,
    #[serde(default)]
    data_tests: Vec<Value>,
}

impl TestLists {
    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.tests.iter().chain(self.data_tests.iter())
    }
}

/// A generic test as declared, before it becomes a node.
#[derive(Debug, Clone)]
pub(super) struct TestDecl {
    pub test: String,
    pub column: Option<String>,
    pub args: BTreeMap<String, Value>,
    pub config: Value,
}

/// Config keys of a test that dbt accepts beside its arguments.
const TEST_CONFIG_KEYS: &[&str] =
    &["severity", "where", "limit", "error_if", "warn_if", "fail_calc", "store_failures", "store_failures_as", "enabled", "tags", "alias", "schema", "database"];

pub(super) const BUILTIN_TESTS: &[&str] = &["unique", "not_null", "accepted_values", "relationships"];

pub(super) fn read(path: &Path, rel: &str) -> Result<PropertiesFile> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read {rel}: {e}"))?;
    if text.trim().is_empty() {
        return Ok(PropertiesFile::default());
    }
    // straight into the structs; anything that does not fit takes the long
    // way below, whose errors name what is wrong
    if let Ok(props) = serde_norway::from_str::<PropertiesFile>(&text) {
        return Ok(props);
    }
    let yaml: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| anyhow!("{rel}: invalid YAML: {e}"))?;
    if yaml.is_null() {
        return Ok(PropertiesFile::default());
    }
    let json = serde_json::to_value(yaml).map_err(|e| anyhow!("{rel}: unsupported YAML: {e}"))?;
    serde_json::from_value(json).map_err(|e| anyhow!("{rel}: {e}"))
}

/// Parse a `tests:` / `data_tests:` entry: `unique`, or
/// `{accepted_values: {values: [...], config: {severity: warn}}}`, or the
/// dbt ≥ 1.10 form with an `arguments:` block.
pub(super) fn parse_test(entry: &Value, column: Option<&str>, owner: &str, rel: &str) -> Result<TestDecl> {
    let (name, body) = match entry {
        Value::String(name) => (name.clone(), Value::Null),
        Value::Object(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().expect("one entry");
            (k.clone(), v.clone())
        }
        Value::Object(map) if map.contains_key("test_name") || map.contains_key("name") => {
            let name = map.get("test_name").or_else(|| map.get("name")).and_then(|v| v.as_str()).unwrap_or_default();
            (name.to_string(), entry.clone())
        }
        other => bail!("{rel}: cannot read the test {other} on {owner}: expected a test name or a one-key mapping"),
    };
    // whether a test of another name exists is known once macros are read
    let name = name.strip_prefix("dbt.").unwrap_or(&name).to_string();
    let builtin = BUILTIN_TESTS.contains(&name.as_str());
    let mut args = BTreeMap::new();
    let mut config = Value::Null;
    if let Value::Object(map) = body {
        for (k, v) in map {
            match k.as_str() {
                "arguments" => {
                    if let Value::Object(inner) = v {
                        args.extend(inner);
                    }
                }
                "config" => {
                    // keys given beside `config:` stay; `config:` wins
                    let mut c = match std::mem::take(&mut config) {
                        Value::Object(existing) => existing,
                        _ => serde_json::Map::new(),
                    };
                    if let Value::Object(inner) = v {
                        c.extend(inner);
                    }
                    config = Value::Object(c);
                }
                // dbt reads config keys written beside the arguments as config
                k if TEST_CONFIG_KEYS.contains(&k) => {
                    let mut c = match std::mem::take(&mut config) {
                        Value::Object(existing) => existing,
                        _ => serde_json::Map::new(),
                    };
                    c.entry(k.to_string()).or_insert(v);
                    config = Value::Object(c);
                }
                "name" | "test_name" | "description" | "meta" => {}
                _ => {
                    args.insert(k, v);
                }
            }
        }
    }
    let needs: &[&str] = match name.as_str() {
        "accepted_values" => &["values"],
        "relationships" => &["to", "field"],
        _ => &[],
    };
    for arg in needs {
        if !args.contains_key(*arg) {
            bail!("{rel}: test '{name}' on {owner} needs '{arg}'");
        }
    }
    if builtin && column.is_none() && name != "relationships" {
        // model-level generic tests take the column from `column_name`
        if !args.contains_key("column_name") {
            bail!("{rel}: test '{name}' on {owner} has no column: declare it under a column or give column_name");
        }
    }
    let column = column.map(str::to_string).or_else(|| args.get("column_name").and_then(|v| v.as_str()).map(str::to_string));
    Ok(TestDecl { test: name, column, args, config })
}
