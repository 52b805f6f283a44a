//! `airlock init`: write a commented airlock.toml.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::ExitStatus;
use crate::config::{INIT_TEMPLATE, SETTINGS_FILE};

pub fn run(project_dir: &Path, force: bool) -> Result<ExitStatus> {
    if !project_dir.join("dbt_project.yml").is_file() {
        bail!("{}: no dbt_project.yml here; pass --project-dir", project_dir.display());
    }
    let path = project_dir.join(SETTINGS_FILE);
    if path.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(&path, INIT_TEMPLATE).with_context(|| format!("cannot write {}", path.display()))?;
    crate::report::emit(&format!("wrote {}", path.display()));
    Ok(ExitStatus::Success)
}
