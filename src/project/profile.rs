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
    },
    Snowflake(SnowflakeSettings),
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
        "snowflake" => WarehouseSettings::Snowflake(snowflake_settings(&Place { file, target: &target_name }, output)?),
        "" => bail!("{shown}: target '{target_name}' of profile '{profile_name}' has no 'type'"),
        other => bail!(
            "{shown}: target '{target_name}' has type '{other}', which airlock does not support yet (supported: duckdb, snowflake)"
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
}
