//! Connection settings from dbt's `profiles.yml`, read as dbt reads it: the
//! file is rendered with Jinja (`env_var`) first, then the profile named by
//! `dbt_project.yml` and its target are picked. Credentials stay in here and
//! are never printed.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseSettings {
    DuckDb {
        /// as written in the profile; relative paths resolve against the
        /// working directory, as dbt-duckdb does
        path: String,
    },
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub profile_name: String,
    pub target_name: String,
    pub file: PathBuf,
    /// the production schema (`schema:`), `main` when absent
    pub schema: String,
    pub threads: Option<usize>,
    pub warehouse: WarehouseSettings,
}

impl Profile {
    pub fn warehouse_type(&self) -> &'static str {
        match self.warehouse {
            WarehouseSettings::DuckDb { .. } => "duckdb",
        }
    }
}

/// Where profiles.yml is looked for: `--profiles-dir`, `DBT_PROFILES_DIR`,
/// the project directory, then `~/.dbt`.
pub fn find_profiles_file(flag: Option<&Path>, project_dir: &Path) -> Result<PathBuf> {
    if let Some(dir) = flag {
        let file = dir.join("profiles.yml");
        if !file.is_file() {
            bail!("--profiles-dir {}: no profiles.yml there", dir.display());
        }
        return Ok(file);
    }
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Some(env) = std::env::var_os("DBT_PROFILES_DIR") {
        candidates.push(PathBuf::from(env));
    }
    candidates.push(project_dir.to_path_buf());
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".dbt"));
    }
    for dir in candidates {
        let file = dir.join("profiles.yml");
        if file.is_file() {
            return Ok(file);
        }
        tried.push(file.display().to_string());
    }
    bail!("no profiles.yml found (looked in {}); pass --profiles-dir", tried.join(", "))
}

pub fn load_profile(file: &Path, profile_name: &str, target: Option<&str>) -> Result<Profile> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {shown}: {e}"))?;
    let rendered = crate::render::render_config_text(&text, &format!("{shown}"))?;
    let yaml: serde_norway::Value = serde_norway::from_str(&rendered).map_err(|e| anyhow!("{shown}: invalid YAML: {e}"))?;
    let json = serde_json::to_value(yaml).map_err(|e| anyhow!("{shown}: unsupported YAML: {e}"))?;
    let Value::Object(profiles) = json else { bail!("{shown}: expected a mapping of profiles") };
    let Some(profile) = profiles.get(profile_name) else {
        let names: Vec<&str> = profiles.keys().filter(|k| *k != "config").map(String::as_str).collect();
        bail!(
            "profile '{profile_name}' (named in dbt_project.yml) is not defined in {shown}{}; it defines: {}",
            crate::suggest::hint(profile_name, names.iter().copied()),
            if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
        );
    };
    let outputs = profile.get("outputs").and_then(Value::as_object).ok_or_else(|| anyhow!("{shown}: profile '{profile_name}' has no outputs"))?;
    let target_name = match target {
        Some(t) => t.to_string(),
        None => profile
            .get("target")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{shown}: profile '{profile_name}' names no default target; pass --target"))?,
    };
    let Some(output) = outputs.get(&target_name) else {
        let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
        bail!(
            "target '{target_name}' is not an output of profile '{profile_name}' in {shown}{}; outputs: {}",
            crate::suggest::hint(&target_name, names.iter().copied()),
            names.join(", ")
        );
    };
    let kind = output.get("type").and_then(Value::as_str).unwrap_or("");
    let warehouse = match kind {
        "duckdb" => {
            let path = match output.get("path") {
                None | Some(Value::Null) => ":memory:".to_string(),
                Some(Value::String(p)) => p.clone(),
                Some(other) => bail!("{shown}: target '{target_name}': path must be a string, got {other}"),
            };
            if path.starts_with("md:") || path.starts_with("motherduck:") {
                bail!("{shown}: target '{target_name}': MotherDuck paths are not supported; use a local DuckDB file");
            }
            WarehouseSettings::DuckDb { path }
        }
        "" => bail!("{shown}: target '{target_name}' of profile '{profile_name}' has no 'type'"),
        other => bail!(
            "{shown}: target '{target_name}' has type '{other}', which airlock does not support yet (supported: duckdb)"
        ),
    };
    let schema = match output.get("schema") {
        None | Some(Value::Null) => "main".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => bail!("{shown}: target '{target_name}': schema must be a non-empty string, got {other}"),
    };
    let threads = match output.get("threads") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).map(|n| n as usize),
        Some(Value::String(s)) => s.trim().parse::<usize>().ok().filter(|n| *n > 0),
        Some(_) => None,
    };
    Ok(Profile {
        profile_name: profile_name.to_string(),
        target_name,
        file: file.to_path_buf(),
        schema,
        threads,
        warehouse,
    })
}
