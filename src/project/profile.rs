//! Connection settings from dbt's `profiles.yml`, read as dbt reads it: the
//! file is rendered with Jinja (`env_var`) first, then the profile named by
//! `dbt_project.yml` and its target are picked. Credentials are held as
//! [`Secret`]s, which print as `***`, so no message, log line or `{:?}` can
//! show them.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

// one per run: the size difference of the variants does not matter
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseSettings {
    DuckDb {
        /// as written in the profile; relative paths resolve against the
        /// working directory, as dbt-duckdb does
        path: String,
        options: DuckDbOptions,
    },
    Snowflake(SnowflakeSettings),
    BigQuery(BigQuerySettings),
}

/// DuckDB configuration a `type: duckdb` target gives, as dbt-duckdb reads
/// it: `config_options` when the database opens (creation settings such as
/// `default_block_size` among them), `settings` as `SET name = value` on
/// every connection (`memory_limit`, `temp_directory`, …). They win over
/// airlock's own choices (`threads`, `checkpoint_threshold`). Values may be
/// credentials (an S3 key in `settings`), so they are kept as secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DuckDbOptions {
    /// name (lower case), value as text
    pub config: Vec<(String, Secret)>,
    /// name (lower case), value as text (sent as a string literal, which
    /// DuckDB casts to the setting's type)
    pub settings: Vec<(String, Secret)>,
}

/// A credential. Debug and Display print `***`; only [`Secret::expose`]
/// gives the value, at the one place that hands it to the client.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A `type: snowflake` target, with the keys dbt-snowflake reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnowflakeSettings {
    pub account: String,
    pub user: String,
    pub auth: SnowflakeAuth,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    /// where airlock builds, publishes and keeps its ledger and lock
    pub database: String,
    /// set as the session's `QUERY_TAG`
    pub query_tag: Option<String>,
    /// `host`/`port`/`protocol`: where Snowflake is reached when it is not
    /// `https://<account>.snowflakecomputing.com` (a proxy, an emulator)
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
}

impl SnowflakeSettings {
    /// The URL the client talks to.
    pub fn base_url(&self) -> String {
        let protocol = self.protocol.as_deref().unwrap_or("https");
        let host = self.host.clone().unwrap_or_else(|| format!("{}.snowflakecomputing.com", self.account));
        match self.port {
            Some(port) => format!("{protocol}://{host}:{port}/"),
            None => format!("{protocol}://{host}/"),
        }
    }

    /// Whether the profile names where Snowflake is (else the account's URL).
    pub fn custom_endpoint(&self) -> bool {
        self.host.is_some() || self.port.is_some() || self.protocol.is_some()
    }
}

/// A `type: bigquery` target, with the keys dbt-bigquery reads. The dataset
/// (`dataset:` or `schema:`) is the profile's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQuerySettings {
    /// the project jobs run and are billed in, and where datasets live
    pub project: String,
    pub auth: BigQueryAuth,
    /// where datasets are created and jobs run (`US`, `EU`, `europe-west1`)
    pub location: Option<String>,
    /// `interactive` (default) or `batch`
    pub priority: Option<String>,
    /// jobs that would bill more bytes fail without running
    pub maximum_bytes_billed: Option<u64>,
    pub job_execution_timeout_seconds: Option<u64>,
    /// where BigQuery's REST API is when it is not Google's (an emulator):
    /// `http` only for 127.0.0.1, with no credential sent
    pub api_endpoint: Option<String>,
}

impl BigQuerySettings {
    /// The REST v2 base URL the client talks to.
    pub fn v2_base_url(&self) -> String {
        match &self.api_endpoint {
            Some(e) => format!("{}/bigquery/v2", e.trim_end_matches('/')),
            None => "https://bigquery.googleapis.com/bigquery/v2".to_string(),
        }
    }

    /// A plain-http endpoint on this machine: an emulator, reached without a token.
    pub fn local_emulator(&self) -> bool {
        self.api_endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
    }
}

/// How airlock signs in to BigQuery (dbt-bigquery's `method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BigQueryAuth {
    /// `service-account` (`keyfile`) or `service-account-json` (`keyfile_json`):
    /// the key's JSON, checked at load time
    ServiceAccount {
        key: Secret,
        /// where the key came from, for messages (`keyfile '…'` or `keyfile_json`)
        origin: String,
    },
    /// `oauth`: application default credentials (gcloud, GOOGLE_APPLICATION_CREDENTIALS)
    ApplicationDefault,
}

/// How airlock signs in to Snowflake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnowflakeAuth {
    Password(Secret),
    /// key-pair (JWT) authentication with a PKCS#8 PEM key
    KeyPair {
        pem: Secret,
        passphrase: Option<Secret>,
        /// where the key came from, for messages (`private_key_path '…'` or `private_key`)
        origin: String,
    },
    /// an OAuth access token (`authenticator: oauth`, `token`)
    OAuth(Secret),
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
        self.dialect().name()
    }

    /// The SQL dialect of the warehouse this target names.
    pub fn dialect(&self) -> crate::warehouse::Dialect {
        match self.warehouse {
            WarehouseSettings::DuckDb { .. } => crate::warehouse::Dialect::DuckDb,
            WarehouseSettings::Snowflake(_) => crate::warehouse::Dialect::Snowflake,
            WarehouseSettings::BigQuery(_) => crate::warehouse::Dialect::BigQuery,
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
    let place = Place { file, target: &target_name };
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
            WarehouseSettings::DuckDb { path, options: DuckDbOptions { config: duckdb_options(&place, output, "config_options")?, settings: duckdb_options(&place, output, "settings")? } }
        }
        "snowflake" => WarehouseSettings::Snowflake(snowflake_settings(&place, output)?),
        "bigquery" => WarehouseSettings::BigQuery(bigquery_settings(&place, output)?),
        "" => bail!("{shown}: target '{target_name}' of profile '{profile_name}' has no 'type'"),
        other => bail!(
            "{shown}: target '{target_name}' has type '{other}', which airlock does not support yet (supported: duckdb, snowflake, bigquery)"
        ),
    };
    // dbt-bigquery names the dataset `dataset` (or `schema`)
    let schema_key = if kind == "bigquery" && output.get("dataset").is_some_and(|v| !v.is_null()) { "dataset" } else { "schema" };
    let schema = match output.get(schema_key) {
        None | Some(Value::Null) if kind == "bigquery" => bail!("{shown}: target '{target_name}': type bigquery needs `dataset` (or `schema`)"),
        None | Some(Value::Null) => "main".to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => bail!("{shown}: target '{target_name}': {schema_key} must be a non-empty string, got {other}"),
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

/// A `type: duckdb` target's `config_options` or `settings` (`key`): a
/// mapping of DuckDB setting names to strings, numbers or booleans.
fn duckdb_options(place: &Place, output: &Value, key: &str) -> Result<Vec<(String, Secret)>> {
    let map = match output.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(place.error(format!("`{key}` must be a mapping of DuckDB setting names to values"))),
    };
    let mut out: Vec<(String, Secret)> = Vec::with_capacity(map.len());
    for (name, value) in map {
        // the name goes into a statement as it is: a plain identifier only
        let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(place.error(format!("`{key}`: '{name}' is not a DuckDB setting name (letters, digits and '_')")));
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(place.error(format!("`{key}.{name}` must be a string, a number or a boolean"))),
        };
        let name = name.to_ascii_lowercase();
        if out.iter().any(|(n, _)| *n == name) {
            return Err(place.error(format!("`{key}` sets '{name}' twice")));
        }
        out.push((name, Secret::new(text)));
    }
    Ok(out)
}

/// Where a target is, for messages: `profiles.yml target 'dev'`.
struct Place<'a> {
    file: &'a Path,
    target: &'a str,
}

impl Place<'_> {
    fn error(&self, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: target '{}': {message}", self.file.display(), self.target)
    }

    /// A string key; numbers are taken as written (`account: 12345`).
    fn text(&self, output: &Value, key: &str) -> Result<Option<String>> {
        match output.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.error(format!("`{key}` must be a string, got {other}"))),
        }
    }

    fn required(&self, output: &Value, key: &str) -> Result<String> {
        self.text(output, key)?.ok_or_else(|| self.error(format!("type snowflake needs `{key}`")))
    }

    /// A non-negative whole number (`maximum_bytes_billed: 1000000000`, or as text).
    fn count(&self, output: &Value, key: &str) -> Result<Option<u64>> {
        match output.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| self.error(format!("`{key}` must be a whole number, got {n}"))),
            Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| self.error(format!("`{key}` must be a whole number, got '{s}'"))),
            Some(other) => Err(self.error(format!("`{key}` must be a whole number, got {other}"))),
        }
    }

    /// A credential key: never echoed in an error, whatever it holds.
    fn secret(&self, output: &Value, key: &str) -> Result<Option<Secret>> {
        match output.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(Secret::new(s.clone()))),
            Some(Value::Number(n)) => Ok(Some(Secret::new(n.to_string()))),
            Some(_) => Err(self.error(format!("`{key}` must be a string"))),
        }
    }
}

/// A `type: snowflake` output, read as dbt-snowflake reads it.
fn snowflake_settings(place: &Place, output: &Value) -> Result<SnowflakeSettings> {
    let port = match output.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(|| place.error(format!("`port` must be a port number, got {n}")))?),
        Some(Value::String(s)) => Some(s.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| place.error(format!("`port` must be a port number, got '{s}'")))?),
        Some(other) => return Err(place.error(format!("`port` must be a port number, got {other}"))),
    };
    let protocol = place.text(output, "protocol")?.map(|p| p.to_ascii_lowercase());
    if let Some(p) = protocol.as_deref().filter(|p| !matches!(*p, "http" | "https")) {
        return Err(place.error(format!("`protocol` must be https or http, got '{p}'")));
    }
    let host = place.text(output, "host")?;
    if let Some(h) = host.as_deref().filter(|h| h.contains("://") || h.contains('/')) {
        return Err(place.error(format!("`host` must be a host name (set `protocol` and `port` separately), got '{h}'")));
    }
    Ok(SnowflakeSettings {
        account: place.required(output, "account")?,
        user: place.required(output, "user")?,
        auth: snowflake_auth(place, output)?,
        role: place.text(output, "role")?,
        warehouse: place.text(output, "warehouse")?,
        database: place.required(output, "database")?,
        query_tag: place.text(output, "query_tag")?,
        host,
        port,
        protocol,
    })
}

/// The credential, by dbt-snowflake's rules: `authenticator: oauth` takes
/// `token`; a private key means key-pair; otherwise `password`.
fn snowflake_auth(place: &Place, output: &Value) -> Result<SnowflakeAuth> {
    let authenticator = place.text(output, "authenticator")?.map(|a| a.to_ascii_lowercase());
    match authenticator.as_deref() {
        None | Some("snowflake") | Some("snowflake_jwt") | Some("jwt") => {}
        Some("oauth") => {
            if output.get("oauth_client_id").is_some_and(|v| !v.is_null()) {
                return Err(place.error("OAuth with a refresh token (`oauth_client_id`, `oauth_client_secret`) is not supported; give an access token in `token`"));
            }
            let token = place.secret(output, "token")?.ok_or_else(|| place.error("`authenticator: oauth` needs `token` (an OAuth access token)"))?;
            return Ok(SnowflakeAuth::OAuth(token));
        }
        Some(other) => {
            return Err(place.error(format!(
                "`authenticator: {other}` is not supported (supported: snowflake with `password`, key-pair with `private_key_path` or `private_key`, oauth with `token`)"
            )))
        }
    }
    let passphrase = place.secret(output, "private_key_passphrase")?;
    let key_path = place.text(output, "private_key_path")?;
    let inline_key = place.secret(output, "private_key")?;
    let key = match (key_path, inline_key) {
        (Some(_), Some(_)) => return Err(place.error("set either `private_key_path` or `private_key`, not both")),
        (Some(path), None) => {
            let text = std::fs::read_to_string(&path).map_err(|e| place.error(format!("cannot read the key file '{path}' (`private_key_path`): {e}")))?;
            Some((Secret::new(text), format!("private_key_path '{path}'")))
        }
        (None, Some(key)) => Some((key, "private_key".to_string())),
        (None, None) => None,
    };
    if let Some((text, origin)) = key {
        let pem = pkcs8_pem(text.expose(), passphrase.is_some()).map_err(|why| place.error(format!("{origin}: {why}")))?;
        return Ok(SnowflakeAuth::KeyPair { pem, passphrase, origin });
    }
    if authenticator.as_deref().is_some_and(|a| a != "snowflake") {
        return Err(place.error("key-pair authentication needs `private_key_path` or `private_key`"));
    }
    let password = place
        .secret(output, "password")?
        .ok_or_else(|| place.error("type snowflake needs `password`, a private key (`private_key_path` or `private_key`), or `authenticator: oauth` with `token`"))?;
    Ok(SnowflakeAuth::Password(password))
}

/// A `type: bigquery` output, read as dbt-bigquery reads it.
fn bigquery_settings(place: &Place, output: &Value) -> Result<BigQuerySettings> {
    // dbt-bigquery takes `database` as a synonym of `project`
    let project = match (place.text(output, "project")?, place.text(output, "database")?) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => return Err(place.error("type bigquery needs `project`")),
    };
    let priority = place.text(output, "priority")?.map(|p| p.to_ascii_lowercase());
    if let Some(p) = priority.as_deref().filter(|p| !matches!(*p, "interactive" | "batch")) {
        return Err(place.error(format!("`priority` must be interactive or batch, got '{p}'")));
    }
    let api_endpoint = place.text(output, "api_endpoint")?.map(|e| e.trim_end_matches('/').to_string());
    if let Some(e) = api_endpoint.as_deref() {
        let url = url::Url::parse(e).map_err(|why| place.error(format!("`api_endpoint` '{e}' is not a URL: {why}")))?;
        match url.scheme() {
            "https" => {}
            // no credential travels in clear text: plain http reaches only this machine
            "http" if url.host_str() == Some("127.0.0.1") => {}
            "http" => return Err(place.error(format!("`api_endpoint` '{e}': plain http is allowed only for 127.0.0.1 (a local emulator); use https"))),
            other => return Err(place.error(format!("`api_endpoint` '{e}': scheme must be https (or http for 127.0.0.1), got '{other}'"))),
        }
    }
    Ok(BigQuerySettings {
        auth: bigquery_auth(place, output)?,
        project,
        location: place.text(output, "location")?,
        priority,
        maximum_bytes_billed: place.count(output, "maximum_bytes_billed")?,
        job_execution_timeout_seconds: place.count(output, "job_execution_timeout_seconds")?,
        api_endpoint,
    })
}

/// The credential by dbt-bigquery's `method`. A service account key is read
/// and checked here, so a bad key fails before anything connects; errors name
/// where the key came from, never what it holds.
fn bigquery_auth(place: &Place, output: &Value) -> Result<BigQueryAuth> {
    let method = place.text(output, "method")?.map(|m| m.to_ascii_lowercase());
    let (key, origin) = match method.as_deref() {
        Some("oauth") => return Ok(BigQueryAuth::ApplicationDefault),
        Some("service-account") => {
            let path = place.text(output, "keyfile")?.ok_or_else(|| place.error("`method: service-account` needs `keyfile` (the path of a service account key file)"))?;
            let text = std::fs::read_to_string(&path).map_err(|e| place.error(format!("cannot read the key file '{path}' (`keyfile`): {e}")))?;
            (Secret::new(text), format!("keyfile '{path}'"))
        }
        Some("service-account-json") => {
            let text = match output.get("keyfile_json") {
                None | Some(Value::Null) => return Err(place.error("`method: service-account-json` needs `keyfile_json` (the service account key's fields)")),
                Some(Value::Object(map)) => serde_json::to_string(map).map_err(|_| place.error("`keyfile_json` cannot be read"))?,
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(place.error("`keyfile_json` must be a mapping (the key file's fields)")),
            };
            (Secret::new(text), "keyfile_json".to_string())
        }
        None => return Err(place.error("type bigquery needs `method` (oauth, service-account or service-account-json)")),
        Some(other) => return Err(place.error(format!("`method: {other}` is not supported (supported: oauth, service-account with `keyfile`, service-account-json with `keyfile_json`)"))),
    };
    check_service_account_key(key.expose()).map_err(|why| place.error(format!("{origin}: {why}")))?;
    Ok(BigQueryAuth::ServiceAccount { key, origin })
}

/// A service account key as Google issues it: JSON with `type:
/// service_account`, `client_email` and a PEM `private_key`. The reason
/// names fields, never their values.
fn check_service_account_key(text: &str) -> std::result::Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not a service account key: not JSON (line {}, column {})", e.line(), e.column()))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    match field("type") {
        Some("service_account") => {}
        Some(_) => return Err("not a service account key (`type` is not `service_account`)".into()),
        None => return Err("not a service account key (no `type`)".into()),
    }
    for k in ["client_email", "private_key"] {
        if field(k).is_none() {
            return Err(format!("the service account key has no `{k}`"));
        }
    }
    let pem = field("private_key").unwrap_or_default();
    if !(pem.contains("-----BEGIN PRIVATE KEY-----") && pem.contains("-----END PRIVATE KEY-----")) {
        return Err("the service account key's `private_key` is not a PEM private key".into());
    }
    Ok(())
}

/// The key as a PKCS#8 PEM, which the client reads. dbt-snowflake accepts a
/// PEM or the base64 of the DER (no header lines). A PEM that went through
/// an environment variable or a folded YAML string (line breaks as spaces or
/// as `\n`) is re-wrapped. The error says what is wrong without quoting the key.
fn pkcs8_pem(text: &str, has_passphrase: bool) -> std::result::Result<Secret, String> {
    let text = text.replace("\\n", "\n");
    let text = text.trim();
    let (label, body) = match pem_parts(text) {
        Some(parts) => parts,
        None if text.contains("-----BEGIN") => return Err("not a PEM private key (no matching `-----END …-----` line)".into()),
        None => (if has_passphrase { "ENCRYPTED PRIVATE KEY" } else { "PRIVATE KEY" }, text),
    };
    match label {
        "PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" if has_passphrase => {}
        "ENCRYPTED PRIVATE KEY" => return Err("the key is encrypted; set `private_key_passphrase`".into()),
        "RSA PRIVATE KEY" => return Err("the key is PKCS#1 (`BEGIN RSA PRIVATE KEY`); Snowflake keys are PKCS#8: convert it with `openssl pkcs8 -topk8 -in KEY -out KEY.p8`".into()),
        other => return Err(format!("not a PKCS#8 private key (`BEGIN {other}`; expected `BEGIN PRIVATE KEY` or `BEGIN ENCRYPTED PRIVATE KEY`)")),
    }
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')) {
        return Err("not a PEM private key nor the base64 of one".into());
    }
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    Ok(Secret::new(format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))))
}

/// `-----BEGIN L-----` body `-----END L-----` into (L, body).
fn pem_parts(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("-----BEGIN ")?;
    let (label, rest) = rest.split_once("-----")?;
    let (body, _) = rest.split_once(&format!("-----END {label}-----"))?;
    Some((label, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile `p` whose target `dev` has these lines (indented under it).
    fn load(lines: &str) -> (tempfile::TempDir, Result<Profile>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let body: String = lines.lines().map(|l| format!("      {l}\n")).collect();
        let file = dir.path().join("profiles.yml");
        std::fs::write(&file, format!("p:\n  target: dev\n  outputs:\n    dev:\n{body}")).expect("write profiles.yml");
        let profile = load_profile(&file, "p", None);
        (dir, profile)
    }

    fn snowflake(profile: &Profile) -> &SnowflakeSettings {
        match &profile.warehouse {
            WarehouseSettings::Snowflake(s) => s,
            other => panic!("not snowflake: {other:?}"),
        }
    }

    const BASE: &str = "type: snowflake\naccount: acme-1\nuser: loader\ndatabase: analytics\nschema: marts\n";

    #[test]
    fn duckdb_config_options_and_settings_are_read_as_dbt_duckdb_reads_them() {
        let (_dir, profile) = load("type: duckdb\npath: shop.duckdb\nconfig_options:\n  default_block_size: 16384\nsettings:\n  memory_limit: 2GB\n  preserve_insertion_order: false\n  s3_secret_access_key: \"it's-s3cret\"");
        let profile = profile.expect("parses");
        let WarehouseSettings::DuckDb { options, .. } = &profile.warehouse else { panic!("not duckdb: {profile:?}") };
        let shown = |v: &[(String, Secret)]| v.iter().map(|(n, v)| format!("{n}={}", v.expose())).collect::<Vec<_>>();
        assert_eq!(shown(&options.config), ["default_block_size=16384"]);
        assert_eq!(shown(&options.settings), ["memory_limit=2GB", "preserve_insertion_order=false", "s3_secret_access_key=it's-s3cret"]);
        assert!(!format!("{profile:?}").contains("s3cret"), "{profile:?}");
    }

    #[test]
    fn bad_duckdb_settings_name_the_file_the_target_and_the_key() {
        for (lines, message) in [
            ("settings: 2GB", "`settings` must be a mapping of DuckDB setting names to values"),
            ("settings:\n  memory_limit: [1, 2]", "`settings.memory_limit` must be a string, a number or a boolean"),
            ("settings:\n  \"x = 1; DROP TABLE t; --\": 1", "`settings`: 'x = 1; DROP TABLE t; --' is not a DuckDB setting name"),
            ("config_options:\n  Threads: 2\n  threads: 3", "`config_options` sets 'threads' twice"),
        ] {
            let (_dir, profile) = load(&format!("type: duckdb\npath: shop.duckdb\n{lines}"));
            let e = format!("{:#}", profile.expect_err(lines));
            assert!(e.contains("profiles.yml: target 'dev': ") && e.contains(message), "{lines}: {e}");
        }
    }

    #[test]
    fn a_password_profile_reads_every_key_and_never_shows_the_password() {
        let (_dir, profile) = load(&format!(
            "{BASE}password: 'hunter2-s3cret'\nrole: transformer\nwarehouse: wh_xs\nthreads: 8\nquery_tag: airlock\nhost: 127.0.0.1\nport: '8080'\nprotocol: HTTP"
        ));
        let profile = profile.expect("parses");
        assert_eq!(profile.warehouse_type(), "snowflake");
        assert_eq!((profile.schema.as_str(), profile.threads), ("marts", Some(8)));
        let s = snowflake(&profile);
        assert_eq!((s.account.as_str(), s.user.as_str(), s.database.as_str()), ("acme-1", "loader", "analytics"));
        assert_eq!((s.role.as_deref(), s.warehouse.as_deref(), s.query_tag.as_deref()), (Some("transformer"), Some("wh_xs"), Some("airlock")));
        assert_eq!(s.base_url(), "http://127.0.0.1:8080/");
        assert_eq!(s.auth, SnowflakeAuth::Password(Secret::new("hunter2-s3cret")));
        let shown = format!("{profile:?} {:?} {}", s.auth, Secret::new("hunter2-s3cret"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn without_host_the_account_url_is_used() {
        let (_dir, profile) = load(&format!("{BASE}password: x"));
        let profile = profile.expect("parses");
        assert_eq!(snowflake(&profile).base_url(), "https://acme-1.snowflakecomputing.com/");
        assert!(!snowflake(&profile).custom_endpoint());
    }

    #[test]
    fn a_key_pair_profile_reads_the_key_file_and_its_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("rsa_key.p8");
        std::fs::write(&key, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBO\n-----END ENCRYPTED PRIVATE KEY-----\n").expect("write key");
        let (_d, profile) = load(&format!("{BASE}private_key_path: '{}'\nprivate_key_passphrase: 'open sesame'", key.display()));
        let profile = profile.expect("parses");
        match &snowflake(&profile).auth {
            SnowflakeAuth::KeyPair { pem, passphrase, origin } => {
                assert!(pem.expose().contains("MIIFHDBO"));
                assert_eq!(passphrase.as_ref().map(Secret::expose), Some("open sesame"));
                assert!(origin.contains("rsa_key.p8"), "{origin}");
            }
            other => panic!("not key-pair: {other:?}"),
        }
        assert!(!format!("{profile:?}").contains("MIIFHDBO") && !format!("{profile:?}").contains("sesame"));
    }

    #[test]
    fn an_inline_base64_key_is_wrapped_as_pem() {
        let (_dir, profile) = load(&format!("{BASE}private_key: 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'"));
        match &snowflake(&profile.expect("parses")).auth {
            SnowflakeAuth::KeyPair { pem, passphrase: None, .. } => {
                assert_eq!(pem.expose(), "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n")
            }
            other => panic!("not key-pair: {other:?}"),
        }
    }

    #[test]
    fn a_pem_folded_into_one_line_is_rewrapped() {
        let wrapped = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        for folded in ["-----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASC BKcwggSjAgEAAoIBAQC7 -----END PRIVATE KEY-----", &wrapped.replace('\n', "\\n")] {
            assert_eq!(pkcs8_pem(folded, false).map(|k| k.expose().to_string()), Ok("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n".to_string()));
        }
    }

    #[test]
    fn an_oauth_profile_takes_the_token() {
        let (_dir, profile) = load(&format!("{BASE}authenticator: oauth\ntoken: 'tok-123'"));
        assert_eq!(snowflake(&profile.expect("parses")).auth, SnowflakeAuth::OAuth(Secret::new("tok-123")));
    }

    #[test]
    fn a_missing_key_file_is_named_with_the_target() {
        let (_dir, profile) = load(&format!("{BASE}private_key_path: /nonexistent/rsa_key.p8"));
        let err = format!("{:#}", profile.expect_err("missing key file"));
        assert!(err.contains("profiles.yml: target 'dev': cannot read the key file '/nonexistent/rsa_key.p8' (`private_key_path`)"), "{err}");
    }

    #[test]
    fn bad_keys_and_missing_fields_are_clear_and_never_echo_secrets() {
        let cases = [
            (format!("{BASE}private_key: '-----BEGIN RSA PRIVATE KEY-----\n  abc\n  -----END RSA PRIVATE KEY-----'"), "PKCS#1"),
            (format!("{BASE}private_key: '-----BEGIN ENCRYPTED PRIVATE KEY-----\n  abc\n  -----END ENCRYPTED PRIVATE KEY-----'"), "set `private_key_passphrase`"),
            (format!("{BASE}private_key: '-----BEGIN PRIVATE KEY-----\n  abc'"), "no matching `-----END"),
            (format!("{BASE}authenticator: oauth"), "needs `token`"),
            (format!("{BASE}authenticator: externalbrowser\npassword: pw-secret-1"), "`authenticator: externalbrowser` is not supported"),
            (format!("{BASE}password: [pw-secret-1]"), "`password` must be a string"),
            (format!("{BASE}password: x\nport: 99999"), "`port` must be a port number"),
            (format!("{BASE}password: x\nprotocol: ftp"), "`protocol` must be https or http"),
            ("type: snowflake\naccount: a\nuser: u\npassword: pw-secret-1".to_string(), "needs `database`"),
            ("type: snowflake\naccount: a\ndatabase: d\npassword: x".to_string(), "needs `user`"),
            (BASE.to_string(), "needs `password`"),
        ];
        for (yaml, expected) in cases {
            let (_dir, profile) = load(&yaml);
            let err = format!("{:#}", profile.expect_err(expected));
            assert!(err.contains(expected) && err.contains("target 'dev'"), "{expected}: {err}");
            assert!(!err.contains("pw-secret-1"), "{err}");
        }
    }

    fn bigquery(profile: &Profile) -> &BigQuerySettings {
        match &profile.warehouse {
            WarehouseSettings::BigQuery(s) => s,
            other => panic!("not bigquery: {other:?}"),
        }
    }

    const KEY: &str = r#"{"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQsecretbody\n-----END PRIVATE KEY-----\n"}"#;

    #[test]
    fn a_bigquery_profile_reads_every_key_and_never_shows_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("sa.json");
        std::fs::write(&key, KEY).expect("write key");
        let (_d, profile) = load(&format!(
            "type: bigquery\nmethod: service-account\nproject: my-proj\ndataset: analytics\nkeyfile: '{}'\nlocation: EU\nthreads: 4\npriority: BATCH\nmaximum_bytes_billed: 1000000000\njob_execution_timeout_seconds: '300'\napi_endpoint: 'http://127.0.0.1:9050/'",
            key.display()
        ));
        let profile = profile.expect("parses");
        assert_eq!((profile.warehouse_type(), profile.schema.as_str(), profile.threads), ("bigquery", "analytics", Some(4)));
        let s = bigquery(&profile);
        assert_eq!((s.project.as_str(), s.location.as_deref(), s.priority.as_deref()), ("my-proj", Some("EU"), Some("batch")));
        assert_eq!((s.maximum_bytes_billed, s.job_execution_timeout_seconds), (Some(1_000_000_000), Some(300)));
        assert_eq!(s.v2_base_url(), "http://127.0.0.1:9050/bigquery/v2");
        assert!(s.local_emulator());
        assert!(!format!("{profile:?}").contains("secretbody"));
    }

    #[test]
    fn bigquery_keyfile_json_oauth_and_schema_are_read_as_dbt_does() {
        let (_d, profile) = load("type: bigquery\nmethod: oauth\ndatabase: p2\nschema: s2");
        let profile = profile.expect("parses");
        assert_eq!((bigquery(&profile).project.as_str(), profile.schema.as_str()), ("p2", "s2"));
        assert_eq!(bigquery(&profile).auth, BigQueryAuth::ApplicationDefault);
        assert_eq!(bigquery(&profile).v2_base_url(), "https://bigquery.googleapis.com/bigquery/v2");
        let (_d, profile) = load("type: bigquery\nmethod: service-account-json\nproject: p\ndataset: d\nkeyfile_json:\n  type: service_account\n  client_email: a@b\n  private_key: \"-----BEGIN PRIVATE KEY-----\\nMIIEvQsecretbody\\n-----END PRIVATE KEY-----\\n\"");
        match &bigquery(&profile.expect("parses")).auth {
            BigQueryAuth::ServiceAccount { key, origin } => assert!(key.expose().contains("secretbody") && origin == "keyfile_json"),
            other => panic!("not a service account: {other:?}"),
        }
    }

    #[test]
    fn bad_bigquery_profiles_are_clear_and_never_echo_the_key() {
        let cases = [
            ("type: bigquery\nmethod: oauth\ndataset: d", "type bigquery needs `project`"),
            ("type: bigquery\nmethod: oauth\nproject: p", "needs `dataset` (or `schema`)"),
            ("type: bigquery\nproject: p\ndataset: d", "needs `method`"),
            ("type: bigquery\nmethod: oauth-secrets\nproject: p\ndataset: d", "`method: oauth-secrets` is not supported"),
            ("type: bigquery\nmethod: service-account\nproject: p\ndataset: d", "needs `keyfile`"),
            ("type: bigquery\nmethod: service-account-json\nproject: p\ndataset: d\nkeyfile_json: '-----BEGIN PRIVATE KEY-----secretbody'", "not JSON"),
            ("type: bigquery\nmethod: oauth\nproject: p\ndataset: d\npriority: urgent", "`priority` must be interactive or batch"),
            ("type: bigquery\nmethod: oauth\nproject: p\ndataset: d\nmaximum_bytes_billed: lots", "`maximum_bytes_billed` must be a whole number"),
            ("type: bigquery\nmethod: oauth\nproject: p\ndataset: d\napi_endpoint: 'http://10.0.0.1:9050'", "plain http is allowed only for 127.0.0.1"),
        ];
        for (yaml, expected) in cases {
            let (_dir, profile) = load(yaml);
            let err = format!("{:#}", profile.expect_err(expected));
            assert!(err.contains(expected) && err.contains("target 'dev'"), "{expected}: {err}");
            assert!(!err.contains("secretbody"), "{err}");
        }
    }
}
