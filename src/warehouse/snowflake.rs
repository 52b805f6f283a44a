//! Snowflake, through `snowflake-connector-rs` (Snowflake's REST protocol,
//! JSON result sets). A profile's credentials reach the client here and
//! nowhere else; messages name the account, user and database, never them.
//!
//! - **Sessions.** Nothing connects until the first statement. Sessions are
//!   logged in on demand (database, schema, role, warehouse and `QUERY_TAG`
//!   set at login) and kept in a small pool; `execute_script` and
//!   `execute_atomic` hold one session throughout, so temp tables and the
//!   transaction stay theirs. Snowflake allows one statement per request
//!   unless told otherwise, so `execute` can never run a batch.
//! - **Transactions.** DDL commits on its own (and commits the transaction it
//!   interrupts): `execute_atomic` is `BEGIN … COMMIT` and is atomic for DML,
//!   which is what the capabilities promise.
//! - **Retries.** Logins and statement submissions are retried a bounded
//!   number of times on transport failures, HTTP 429 and 5xx, each retry
//!   logged. A statement is retried only while Snowflake never took it (no
//!   query id yet), and a statement error is never retried.
//! - **Cancel.** Every statement in flight is aborted through the client's
//!   canceller (Snowflake's abort-request), then its session is still usable.
//! - **Lock.** `"AIRLOCK"."DEPLOY_LOCK"` in the profile's database, created
//!   with its only row by one `CREATE TABLE … AS SELECT`: Snowflake does not
//!   enforce unique keys, but creating a table that exists fails, which makes
//!   taking the lock one atomic step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, NaiveTime};
use snowflake_connector_rs as sf;
use sf::ColumnType;

use super::{Capabilities, CatalogEntry, Dialect, LockError, LockInfo, ObjectKind, Rows, SeedLoad, Warehouse};
use crate::project::profile::{SnowflakeAuth, SnowflakeSettings};

const D: Dialect = Dialect::Snowflake;
const LOCK_SCHEMA: &str = "AIRLOCK";
const LOCK_TABLE: &str = "DEPLOY_LOCK";
/// The pause before each retry of a transient failure; its length bounds the retries.
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(2)];
/// Seed rows per INSERT, and bind values per INSERT at most.
const SEED_BATCH_ROWS: usize = 500;
const SEED_BATCH_VALUES: usize = 10_000;

type Statement = sf::Statement<sf::PositionalBinds>;

fn statement(sql: impl Into<String>) -> Statement {
    Statement::new_positional(sql.into())
}

pub struct Snowflake {
    settings: SnowflakeSettings,
    /// `profiles.yml target 'dev'`, for messages
    origin: String,
    base_url: String,
    read_only: bool,
    client: sf::Client,
    pool: Mutex<Vec<sf::Session>>,
    /// a canceller per statement in flight, keyed by a local id
    in_flight: Mutex<HashMap<u64, sf::QueryCanceller>>,
    next_id: AtomicU64,
    /// the lock row this process wrote last, while it holds the lock; held
    /// across each lock statement so the heartbeat and a release update in turn
    held: tokio::sync::Mutex<Option<String>>,
}

impl Snowflake {
    /// A warehouse for `settings`; `schema` is the profile's schema (the
    /// session's current schema). Connects on first use. `read_only`: plan
    /// and history, which never take the lock (nor create its schema).
    pub fn open(settings: SnowflakeSettings, schema: &str, origin: String, read_only: bool) -> Result<Snowflake> {
        let base_url = settings.base_url();
        let mut config = sf::ClientConfig::new(&settings.user, &settings.account, auth_config(&settings.auth)).with_session(session_config(&settings, schema));
        if settings.custom_endpoint() {
            let url = url::Url::parse(&base_url).map_err(|e| anyhow!("{origin}: `host`, `port` and `protocol` do not make a URL ({base_url}): {e}"))?;
            config = config.with_endpoint(sf::EndpointConfig::custom_base_url(url));
        }
        let client = sf::Client::new(config).map_err(|e| anyhow!("{origin}: cannot set up the Snowflake client for {base_url}: {}", chain(&e)))?;
        Ok(Snowflake {
            settings,
            origin,
            base_url,
            read_only,
            client,
            pool: Mutex::new(Vec::new()),
            in_flight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            held: tokio::sync::Mutex::new(None),
        })
    }

    async fn checkout(&self) -> Result<sf::Session> {
        if let Some(session) = self.pool.lock().expect("pool poisoned").pop() {
            return Ok(session);
        }
        self.login().await
    }

    fn checkin(&self, session: sf::Session) {
        self.pool.lock().expect("pool poisoned").push(session);
    }

    /// A new session, retrying transient failures.
    async fn login(&self) -> Result<sf::Session> {
        let mut attempt = 0;
        loop {
            match self.client.create_session().await {
                Ok(session) => {
                    tracing::debug!("Snowflake session opened for user '{}' on account '{}'", self.settings.user, self.settings.account);
                    return Ok(session);
                }
                Err(e) => match transient(&e) {
                    Some(why) if attempt < RETRY_DELAYS.len() => {
                        self.pause(attempt, "login", &why).await;
                        attempt += 1;
                    }
                    _ => return Err(self.login_error(&e, attempt + 1)),
                },
            }
        }
    }

    async fn pause(&self, attempt: usize, what: &str, why: &str) {
        let delay = RETRY_DELAYS[attempt];
        tracing::warn!("Snowflake {what} at {} failed ({why}); retry {} of {} in {delay:?}", self.base_url, attempt + 1, RETRY_DELAYS.len());
        tokio::time::sleep(delay).await;
    }

    fn login_error(&self, e: &sf::Error, attempts: usize) -> anyhow::Error {
        let (user, account) = (&self.settings.user, &self.settings.account);
        match e.kind() {
            sf::ErrorKind::Auth => {
                let why = e.snowflake_message().map(str::to_string).unwrap_or_else(|| chain(e));
                let key = match &self.settings.auth {
                    SnowflakeAuth::KeyPair { origin, passphrase, .. } if e.snowflake_message().is_none() => {
                        let check = if passphrase.is_some() { "; is `private_key_passphrase` right?" } else { "" };
                        format!(" (the key from {origin} in {}{check})", self.origin)
                    }
                    _ => String::new(),
                };
                anyhow!("Snowflake login failed for user '{user}' on account '{account}': {why}{key}")
            }
            sf::ErrorKind::Network | sf::ErrorKind::Timeout => self.gave_up(e, attempts),
            _ => anyhow!("Snowflake login failed for user '{user}' on account '{account}' at {}: {}", self.base_url, chain(e)),
        }
    }

    /// A transport failure or an HTTP error answer, after `attempts` tries.
    fn gave_up(&self, e: &sf::Error, attempts: usize) -> anyhow::Error {
        let tries = format!("{attempts} attempt{}", if attempts == 1 { "" } else { "s" });
        match http_status(e) {
            Some(_) => anyhow!("Snowflake at {} for account '{}' failed ({tries}): {e}", self.base_url, self.settings.account),
            None => anyhow!(
                "cannot reach Snowflake for account '{}' at {} ({tries}): {}; check `account`{} in {}",
                self.settings.account,
                self.base_url,
                root_cause(e),
                if self.settings.custom_endpoint() { ", `host`, `port` and `protocol`" } else { "" },
                self.origin
            ),
        }
    }

    /// One statement on `session`, with its whole result. Retried while
    /// Snowflake provably never took it; an expired session is replaced.
    async fn run(&self, session: &mut sf::Session, stmt: &Statement) -> Result<sf::ResultTable> {
        let mut attempt = 0;
        let mut relogged = false;
        loop {
            let err = match self.submit(session, stmt.clone()).await {
                Ok(table) => return Ok(table),
                Err(e) => e,
            };
            if err.is_session_expired() && !relogged {
                relogged = true;
                *session = self.login().await?;
                continue;
            }
            match transient(&err).filter(|_| err.query_id().is_none()) {
                Some(why) if attempt < RETRY_DELAYS.len() => {
                    self.pause(attempt, "statement", &why).await;
                    attempt += 1;
                }
                Some(_) => return Err(self.gave_up(&err, attempt + 1)),
                None => return Err(self.statement_error(&err)),
            }
        }
    }

    /// Submit and collect, with a canceller registered while it runs.
    async fn submit(&self, session: &sf::Session, stmt: Statement) -> sf::Result<sf::ResultTable> {
        let handle = session.query_handle(stmt)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.in_flight.lock().expect("in-flight poisoned").insert(id, handle.canceller());
        let result = match handle.execute().await {
            Ok(cursor) => cursor.collect_table().await,
            Err(e) => Err(e),
        };
        self.in_flight.lock().expect("in-flight poisoned").remove(&id);
        result
    }

    /// A statement's error, saying what to fix where Snowflake's own words
    /// point at the profile (the warehouse or database it names).
    fn statement_error(&self, e: &sf::Error) -> anyhow::Error {
        let text = chain(e);
        match e.snowflake_code() {
            Some("000606") => {
                let hint = match &self.settings.warehouse {
                    Some(w) => {
                        let role = self.settings.role.as_ref().map(|r| format!("role '{r}'")).unwrap_or_else(|| "the user's default role".into());
                        format!("the warehouse '{w}' named in {} does not exist, or {role} may not use it", self.origin)
                    }
                    None => format!("{} names no `warehouse`", self.origin),
                };
                anyhow!("{text} ({hint})")
            }
            Some("090105") => anyhow!("{text} (the database '{}' named in {} does not exist, or this role may not use it)", self.settings.database, self.origin),
            _ => anyhow!("{text}"),
        }
    }

    /// Run `stmts` in order on one session; `atomic` wraps them in a
    /// transaction, rolled back on failure.
    async fn run_all(&self, stmts: &[String], atomic: bool) -> Result<()> {
        let mut session = self.checkout().await?;
        let result = self.run_all_on(&mut session, stmts, atomic).await;
        if result.is_err() && atomic {
            // a session whose transaction may still be open is not reused
            match self.run(&mut session, &statement("ROLLBACK")).await {
                Ok(_) => self.checkin(session),
                Err(e) => tracing::warn!("Snowflake ROLLBACK failed: {e:#}"),
            }
        } else {
            self.checkin(session);
        }
        result
    }

    async fn run_all_on(&self, session: &mut sf::Session, stmts: &[String], atomic: bool) -> Result<()> {
        if atomic {
            self.run(session, &statement("BEGIN")).await?;
        }
        for (i, sql) in stmts.iter().enumerate() {
            if atomic {
                // tests: a publish killed or failing at its K-th step, mid-transaction
                crate::failpoint::in_atomic_batch(i)?;
            }
            let first_line = sql.trim().lines().next().unwrap_or_default();
            let rolled_back = if atomic { "; the transaction is rolled back (DDL before it committed on its own)" } else { "" };
            self.run(session, &statement(sql.as_str())).await.with_context(|| format!("statement {} of {}: {first_line}{rolled_back}", i + 1, stmts.len()))?;
        }
        if atomic {
            self.run(session, &statement("COMMIT")).await.context("COMMIT failed")?;
        }
        Ok(())
    }

    async fn query_statement(&self, stmt: &Statement) -> Result<Rows> {
        let mut session = self.checkout().await?;
        let result = self.run(&mut session, stmt).await;
        self.checkin(session);
        table_rows(&result?)
    }

    /// The rows of the table a CTAS just created: Snowflake answers a CTAS
    /// with a status line only, and counting a table without a filter is a
    /// metadata lookup there. None for other statements or when it fails.
    async fn count_created(&self, session: &mut sf::Session, sql: &str) -> Option<u64> {
        let target = ctas_target(sql)?;
        match self.run(session, &statement(format!("SELECT COUNT(*) FROM {target}"))).await.and_then(|t| table_rows(&t)) {
            Ok(rows) => rows.rows.first()?.first()?.as_deref()?.parse().ok(),
            Err(e) => {
                tracing::debug!("could not count the rows of {target}: {e:#}");
                None
            }
        }
    }

    /// Beside the ledger (in its own database when it has one).
    fn lock_relation() -> String {
        crate::ledger::table(D, LOCK_TABLE)
    }

    /// The lock row as stored, or None when there is no lock table.
    async fn read_lock_row(&self) -> Result<Option<String>> {
        let select = statement(format!("SELECT {} FROM {}", D.quote("INFO"), Self::lock_relation()));
        match self.query_statement(&select).await {
            Ok(rows) => Ok(Some(rows.rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_default())),
            // the usual reason is that nobody holds the lock: confirm it
            Err(e) => {
                let exists = statement(match crate::ledger::home() {
                    Some(h) => format!("SELECT COUNT(*) FROM {}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", D.quote(&h.database)),
                    None => "SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_CATALOG = CURRENT_DATABASE() AND TABLE_SCHEMA = ? AND TABLE_NAME = ?".into(),
                })
                .bind(LOCK_SCHEMA)
                .bind(LOCK_TABLE);
                let rows = self.query_statement(&exists).await?;
                match rows.rows.first().and_then(|r| r.first()).cloned().flatten().as_deref() {
                    Some("0") => Ok(None),
                    _ => Err(e.context(format!("cannot read the deploy lock {}", Self::lock_relation()))),
                }
            }
        }
    }

    /// `UPDATE` the lock row from `from` to `to`; the rows it changed.
    async fn swap_lock_row(&self, from: &str, to: &str) -> Result<u64> {
        let info = D.quote("INFO");
        let update = statement(format!("UPDATE {} SET {info} = ? WHERE {info} = ?", Self::lock_relation())).bind(to.to_string()).bind(from.to_string());
        let mut session = self.checkout().await?;
        let result = self.run(&mut session, &update).await;
        self.checkin(session);
        Ok(rows_written(&result?)?.unwrap_or(0))
    }
}

fn auth_config(auth: &SnowflakeAuth) -> sf::AuthConfig {
    match auth {
        SnowflakeAuth::Password(password) => sf::AuthConfig::password(password.expose()),
        SnowflakeAuth::KeyPair { pem, passphrase, .. } => sf::AuthConfig::key_pair(match passphrase {
            Some(pass) => sf::KeyPairConfig::from_encrypted_pem(pem.expose(), pass.expose().as_bytes()),
            None => sf::KeyPairConfig::from_pem(pem.expose()),
        }),
        SnowflakeAuth::OAuth(token) => sf::AuthConfig::oauth(token.expose()),
    }
}

fn session_config(settings: &SnowflakeSettings, schema: &str) -> sf::SessionConfig {
    let mut config = sf::SessionConfig::new().with_database(&settings.database).with_schema(schema);
    if let Some(role) = &settings.role {
        config = config.with_role(role);
    }
    if let Some(warehouse) = &settings.warehouse {
        config = config.with_warehouse(warehouse);
    }
    if let Some(tag) = &settings.query_tag {
        config = config.with_session_parameter("QUERY_TAG", serde_json::Value::String(tag.clone()));
    }
    config
}

/// Why a failure is worth retrying (the request never reached Snowflake, or
/// Snowflake asked to come back), or None.
fn transient(e: &sf::Error) -> Option<String> {
    if e.kind() != sf::ErrorKind::Network || e.to_string().starts_with("chunk download") {
        return None;
    }
    match http_status(e) {
        Some(status) if status == 429 || (500..600).contains(&status) => Some(format!("HTTP {status}")),
        Some(_) => None,
        None => Some(root_cause(e)),
    }
}

/// The HTTP status of an error answer (the client shows it as `HTTP 503: …`).
fn http_status(e: &sf::Error) -> Option<u16> {
    let text = e.to_string();
    text.strip_prefix("HTTP ")?.split(':').next()?.trim().parse().ok()
}

/// The error and its causes, each once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The innermost cause: `Connection refused (os error 111)`, not the URL
/// wrapped around it.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// A row with every cell as text (see [`cell_text`]).
struct TextRow(Vec<Option<String>>);

impl sf::FromRow for TextRow {
    type Plan = Vec<ColumnType>;

    fn build_plan(ctx: sf::RowPlanContext<'_>) -> sf::error::PlanBuildResult<Self::Plan> {
        Ok(ctx.schema().columns().iter().map(|c| c.ty().clone()).collect())
    }

    fn from_row_with_plan(row: sf::RowRef<'_>, plan: &Self::Plan) -> sf::error::RowDecodeResult<Self> {
        let mut cells = Vec::with_capacity(plan.len());
        for (i, ty) in plan.iter().enumerate() {
            cells.push(row.cell_at(i)?.raw().map(|raw| cell_text(ty, raw)));
        }
        Ok(TextRow(cells))
    }
}

fn table_rows(table: &sf::ResultTable) -> Result<Rows> {
    let columns = table.schema().columns().iter().map(|c| c.name().to_string()).collect();
    let rows = table.rows::<TextRow>().map_err(|e| anyhow!("reading a Snowflake result: {e}"))?.map(|r| r.map(|t| t.0)).collect::<sf::Result<_>>().map_err(|e| anyhow!("reading a Snowflake result: {e}"))?;
    Ok(Rows { columns, rows })
}

/// A cell of Snowflake's JSON result encoding as text: dates as
/// `YYYY-MM-DD`, times and timestamps as `YYYY-MM-DD HH:MM:SS[.fff]` (UTC for
/// NTZ/LTZ, local time and `+HH:MM` for TZ), booleans as `true`/`false`,
/// numbers and everything else as sent. Text it cannot decode is kept as sent.
fn cell_text(ty: &ColumnType, raw: &str) -> String {
    let decoded = match ty {
        ColumnType::Boolean => match raw {
            "1" | "true" | "TRUE" => Some("true".to_string()),
            "0" | "false" | "FALSE" => Some("false".to_string()),
            _ => None,
        },
        ColumnType::Date => raw.trim().parse::<i64>().ok().and_then(|days| DateTime::from_timestamp(days.checked_mul(86_400)?, 0)).map(|d| d.format("%Y-%m-%d").to_string()),
        ColumnType::Time { .. } => epoch_nanos(raw).and_then(|(secs, nanos)| NaiveTime::from_num_seconds_from_midnight_opt(u32::try_from(secs).ok()?, nanos)).map(|t| format!("{}{}", t.format("%H:%M:%S"), fraction(t.format("%f").to_string()))),
        ColumnType::TimestampNtz { .. } | ColumnType::TimestampLtz { .. } => epoch_nanos(raw).and_then(|(secs, nanos)| DateTime::from_timestamp(secs, nanos)).map(|t| timestamp_text(&t.naive_utc(), "")),
        ColumnType::TimestampTz { .. } => {
            let (epoch, zone) = raw.trim().split_once(' ').unwrap_or((raw, "1440"));
            let offset = zone.trim().parse::<i32>().ok().and_then(|z| FixedOffset::east_opt((z - 1440) * 60));
            epoch_nanos(epoch).and_then(|(secs, nanos)| Some(DateTime::from_timestamp(secs, nanos)?.with_timezone(&offset?))).map(|t| timestamp_text(&t.naive_local(), &t.format("%:z").to_string()))
        }
        _ => None,
    };
    decoded.unwrap_or_else(|| raw.to_string())
}

fn timestamp_text(t: &chrono::NaiveDateTime, zone: &str) -> String {
    format!("{}{}{zone}", t.format("%Y-%m-%d %H:%M:%S"), fraction(t.format("%f").to_string()))
}

/// `.5` for nanoseconds `500000000`; nothing for zero.
fn fraction(nanos: String) -> String {
    let digits = nanos.trim_end_matches('0');
    if digits.is_empty() { String::new() } else { format!(".{digits}") }
}

/// `-1.500000000` → (-2, 500000000): whole seconds (floored) and nanoseconds.
fn epoch_nanos(raw: &str) -> Option<(i64, u32)> {
    let raw = raw.trim();
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let total = i128::from(whole.parse::<i64>().ok()?) * 1_000_000_000 + format!("{frac:0<9}").parse::<i128>().ok()?;
    let total = if negative { -total } else { total };
    Some((i64::try_from(total.div_euclid(1_000_000_000)).ok()?, u32::try_from(total.rem_euclid(1_000_000_000)).ok()?))
}

/// Rows written, from the counts Snowflake answers DML with (`number of
/// rows inserted`, `… updated`, `… deleted`; a MERGE's are summed).
fn rows_written(table: &sf::ResultTable) -> Result<Option<u64>> {
    let counted: Vec<usize> = table.schema().columns().iter().enumerate().filter(|(_, c)| c.name().starts_with("number of rows ")).map(|(i, _)| i).collect();
    if counted.is_empty() {
        return Ok(None);
    }
    let rows = table_rows(table)?;
    let first = rows.rows.first().cloned().unwrap_or_default();
    Ok(Some(counted.iter().filter_map(|&i| first.get(i).cloned().flatten()?.parse::<u64>().ok()).sum()))
}

/// The table a `CREATE … TABLE … AS SELECT` creates, as written, or None for
/// any other statement. Snowflake answers a CTAS with a status line only.
fn ctas_target(sql: &str) -> Option<String> {
    let tokens = tokens(sql);
    let mut i = 0;
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.eq_ignore_ascii_case(w));
    if !word(i, "CREATE") {
        return None;
    }
    i += 1;
    if word(i, "OR") && word(i + 1, "REPLACE") {
        i += 2;
    }
    while ["LOCAL", "GLOBAL", "TEMP", "TEMPORARY", "VOLATILE", "TRANSIENT"].iter().any(|w| word(i, w)) {
        i += 1;
    }
    if !word(i, "TABLE") {
        return None;
    }
    i += 1;
    if word(i, "IF") && word(i + 1, "NOT") && word(i + 2, "EXISTS") {
        i += 3;
    }
    let mut name = tokens.get(i)?.clone();
    i += 1;
    while tokens.get(i).map(String::as_str) == Some(".") {
        name.push('.');
        name.push_str(tokens.get(i + 1)?);
        i += 2;
    }
    // what follows the name, outside parentheses: AS makes it a CTAS
    let mut depth = 0usize;
    for t in &tokens[i..] {
        match t.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            t if t.eq_ignore_ascii_case("AS") => return Some(name),
            t if ["CLONE", "LIKE", "USING"].iter().any(|w| t.eq_ignore_ascii_case(w)) => return None,
            _ => {}
        }
    }
    None
}

/// Words, quoted identifiers (quotes kept), strings and single punctuation of
/// `sql`; comments and whitespace dropped. Enough to read a statement's head.
fn tokens(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if (c == '-' && chars.get(i + 1) == Some(&'-')) || (c == '/' && chars.get(i + 1) == Some(&'/')) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() {
                // `\x` in a string and a doubled quote stay inside
                if (chars[i] == '\\' && c == '\'') || (chars[i] == c && chars.get(i + 1) == Some(&c)) {
                    i += 2;
                } else if chars[i] == c {
                    break;
                } else {
                    i += 1;
                }
            }
            i = (i + 1).min(chars.len());
            out.push(chars[start..i].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// A seed's column type as dbt infers it from the CSV (agate): integer,
/// float, boolean, date, timestamp, else text. Empty cells are NULL and say
/// nothing about the type.
pub(super) fn infer_type(values: &[Option<&str>]) -> &'static str {
    let present: Vec<&str> = values.iter().flatten().copied().collect();
    let all = |f: fn(&str) -> bool| !present.is_empty() && present.iter().all(|v| f(v));
    if all(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
        "BOOLEAN"
    } else if all(|v| v.parse::<i64>().is_ok()) {
        "INTEGER"
    } else if all(|v| v.parse::<f64>().is_ok_and(f64::is_finite) && v.chars().any(|c| c.is_ascii_digit())) {
        "FLOAT"
    } else if all(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()) {
        "DATE"
    } else if all(|v| ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"].iter().any(|f| chrono::NaiveDateTime::parse_from_str(v, f).is_ok())) {
        "TIMESTAMP_NTZ"
    } else {
        "VARCHAR"
    }
}

/// Rows of cells, None for NULL.
pub(super) type Cells = Vec<Vec<Option<String>>>;

/// A seed CSV: header and rows (empty cells are NULL).
pub(super) fn read_csv(file: &std::path::Path) -> Result<(Vec<String>, Cells)> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_path(file).with_context(|| format!("cannot read seed {}", file.display()))?;
    let header: Vec<String> = reader.headers().with_context(|| format!("seed {}: cannot read its header", file.display()))?.iter().map(|h| h.trim().to_string()).collect();
    if header.is_empty() || header.iter().any(String::is_empty) {
        anyhow::bail!("seed {}: every column needs a name in the header line", file.display());
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("seed {}", file.display()))?;
        rows.push(record.iter().map(|v| (!v.is_empty()).then(|| v.to_string())).collect());
    }
    Ok((header, rows))
}

#[async_trait]
impl Warehouse for Snowflake {
    fn dialect(&self) -> Dialect {
        D
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            transactional_ddl: false,
            schema_swap: true,
            database_swap: true,
            zero_copy_clone: true,
            dml_transactions: true,
            sessions: true,
            seed_loading: true,
        }
    }

    fn describe(&self) -> String {
        format!("Snowflake account {} database {}", self.settings.account, self.settings.database)
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        self.query_statement(&statement(sql)).await.map(|_| ())
    }

    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        let mut session = self.checkout().await?;
        let counted = match self.run(&mut session, &statement(sql)).await {
            Ok(table) => match rows_written(&table) {
                Ok(None) => Ok(self.count_created(&mut session, sql).await),
                other => other,
            },
            Err(e) => Err(e),
        };
        self.checkin(session);
        counted
    }

    async fn query(&self, sql: &str) -> Result<Rows> {
        self.query_statement(&statement(sql)).await
    }

    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        self.run_all(statements, true).await
    }

    async fn execute_script(&self, statements: &[String]) -> Result<()> {
        self.run_all(statements, false).await
    }

    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>> {
        let (header, rows) = read_csv(&seed.file)?;
        D.split_qualified(&seed.target).ok_or_else(|| anyhow!("seed target {} is not a quoted [database.]schema.name", seed.target))?;
        let columns: Vec<String> = header.iter().map(|h| D.quote(&D.fold(h))).collect();
        let definitions = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let configured = seed.column_types.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)).map(|(_, t)| t.clone());
                let ty = configured.unwrap_or_else(|| infer_type(&rows.iter().map(|r| r.get(i).and_then(|v| v.as_deref())).collect::<Vec<_>>()).to_string());
                format!("{} {ty}", columns[i])
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut session = self.checkout().await?;
        let create = statement(format!("CREATE OR REPLACE TABLE {} ({definitions})", seed.target));
        let result: Result<Option<u64>> = async {
            self.run(&mut session, &create).await.with_context(|| format!("creating seed table {}", seed.target))?;
            // the rows go in as bind values, one transaction for all batches
            self.run(&mut session, &statement("BEGIN")).await?;
            let per_batch = (SEED_BATCH_VALUES / columns.len()).clamp(1, SEED_BATCH_ROWS);
            let row_sql = format!("({})", vec!["?"; columns.len()].join(", "));
            let mut loaded = 0u64;
            for batch in rows.chunks(per_batch) {
                let sql = format!("INSERT INTO {} ({}) VALUES {}", seed.target, columns.join(", "), vec![row_sql.as_str(); batch.len()].join(", "));
                let insert = batch.iter().flatten().fold(statement(sql), |s, v| s.bind(v.clone()));
                let written = self.run(&mut session, &insert).await.with_context(|| format!("loading seed {} into {}", seed.file.display(), seed.target))?;
                loaded += rows_written(&written)?.unwrap_or(batch.len() as u64);
            }
            self.run(&mut session, &statement("COMMIT")).await?;
            Ok(Some(loaded))
        }
        .await;
        if result.is_err() {
            let _ = self.run(&mut session, &statement("ROLLBACK")).await;
        }
        self.checkin(session);
        result
    }

    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        if schemas.is_empty() {
            return Ok(Vec::new());
        }
        // the documented views: TABLES lists views too (TABLE_TYPE 'VIEW'), so
        // tables are its base tables and views come from VIEWS with their DDL
        let list = vec!["?"; schemas.len()].join(", ");
        let sql = format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, 'table' AS KIND, NULL AS DDL, ROW_COUNT FROM INFORMATION_SCHEMA.TABLES \
             WHERE TABLE_CATALOG = CURRENT_DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({list}) \
             UNION ALL \
             SELECT TABLE_SCHEMA, TABLE_NAME, 'view', VIEW_DEFINITION, NULL FROM INFORMATION_SCHEMA.VIEWS \
             WHERE TABLE_CATALOG = CURRENT_DATABASE() AND TABLE_SCHEMA IN ({list}) \
             ORDER BY 1, 2"
        );
        let stmt = schemas.iter().chain(schemas).fold(statement(sql), |s, schema| s.bind(schema.clone()));
        let rows = self.query_statement(&stmt).await.context("reading the Snowflake catalog")?;
        Ok(rows
            .rows
            .into_iter()
            .map(|r| {
                let cell = |i: usize| r.get(i).cloned().flatten();
                CatalogEntry {
                    schema: cell(0).unwrap_or_default(),
                    name: cell(1).unwrap_or_default(),
                    kind: if cell(2).as_deref() == Some("view") { ObjectKind::View } else { ObjectKind::Table },
                    // VIEW_DEFINITION is the whole CREATE VIEW statement
                    view_ddl: cell(3).map(|ddl| ddl.trim().trim_end_matches(';').trim_end().to_string()),
                    rows: cell(4).and_then(|n| n.parse().ok()),
                }
            })
            .collect())
    }

    async fn lock(&self, info: &LockInfo) -> Result<(), LockError> {
        if self.read_only {
            return Err(LockError::Other(anyhow!("{} is open read-only; no lock can be taken", self.describe())));
        }
        let json = serde_json::to_string(info).map_err(|e| LockError::Other(e.into()))?;
        let mut held = self.held.lock().await;
        self.execute_script(&crate::ledger::create_schema_statements(D)).await?;
        // the cast: a literal's type is VARCHAR of its length, too short for the next heartbeat
        let create = format!("CREATE TABLE {} AS SELECT CAST({} AS VARCHAR) AS {}", Self::lock_relation(), D.literal(&json), D.quote("INFO"));
        for _ in 0..5 {
            let refused = match self.execute(&create).await {
                Ok(()) => {
                    *held = Some(json);
                    return Ok(());
                }
                Err(e) => e,
            };
            match self.lock_holder().await {
                Ok(Some(holder)) => return Err(LockError::Held { location: self.describe(), holder }),
                // released between our attempt and our read: try again
                Ok(None) => tracing::debug!("lock released while taking it: {refused:#}"),
                Err(_) => return Err(LockError::Other(refused.context(format!("cannot take the deploy lock {}", Self::lock_relation())))),
            }
        }
        Err(LockError::Other(anyhow!("the deploy lock {} keeps changing hands", Self::lock_relation())))
    }

    async fn update_lock(&self, info: &LockInfo) -> Result<()> {
        let mut held = self.held.lock().await;
        let Some(ours) = held.clone() else { return Ok(()) };
        let json = serde_json::to_string(info)?;
        if self.swap_lock_row(&ours, &json).await? != 1 {
            let now = self.lock_holder().await?.map(|h| h.describe()).unwrap_or_else(|| "nobody".into());
            anyhow::bail!("this run no longer holds the deploy lock on {} (now held by {now})", self.describe());
        }
        *held = Some(json);
        Ok(())
    }

    async fn unlock(&self) -> Result<()> {
        let mut held = self.held.lock().await;
        let Some(ours) = held.clone() else { return Ok(()) };
        // a lock taken over from us (`airlock unlock --force`) is theirs now
        match self.read_lock_row().await? {
            Some(row) if row != ours => tracing::warn!("the deploy lock on {} was taken over; left to its new holder", self.describe()),
            Some(_) => self.execute(&format!("DROP TABLE IF EXISTS {}", Self::lock_relation())).await?,
            None => {}
        }
        *held = None;
        Ok(())
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>> {
        Ok(self.read_lock_row().await?.map(|row| {
            // a lock we cannot read is still a lock: held by someone unknown
            serde_json::from_str(&row).unwrap_or_else(|_| LockInfo { release: None, command: "unknown".into(), started_at: "unknown".into(), pid: 0, host: "unknown".into(), heartbeat: None })
        }))
    }

    async fn take_over_lock(&self, expected: &LockInfo, ours: &LockInfo) -> Result<()> {
        let mut held = self.held.lock().await;
        let current = self.read_lock_row().await?;
        let parsed = current.as_deref().and_then(|row| serde_json::from_str::<LockInfo>(row).ok());
        let json = serde_json::to_string(ours)?;
        // compare-and-set on the row as stored: nobody took it in between
        let swapped = match (&current, &parsed) {
            (Some(row), Some(holder)) if holder == expected => self.swap_lock_row(row, &json).await? == 1,
            _ => false,
        };
        if !swapped {
            let now = self.lock_holder().await?.map(|h| h.describe()).unwrap_or_else(|| "free".into());
            anyhow::bail!("the lock on {} changed hands while breaking it (now: {now}); nothing was broken", self.describe());
        }
        *held = Some(json);
        Ok(())
    }

    async fn cancel(&self) {
        let cancellers: Vec<sf::QueryCanceller> = self.in_flight.lock().expect("in-flight poisoned").drain().map(|(_, c)| c).collect();
        let aborts: Vec<_> = cancellers.into_iter().map(|c| tokio::spawn(async move { c.cancel().await })).collect();
        for abort in aborts {
            match tokio::time::timeout(Duration::from_secs(10), abort).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("could not cancel a Snowflake query: {e}"),
                Ok(Err(e)) => tracing::warn!("could not cancel a Snowflake query: {e}"),
                Err(_) => tracing::warn!("cancelling a Snowflake query timed out"),
            }
        }
    }
}

impl Drop for Snowflake {
    /// Never leave the lock behind on an error path. The async runtime may be
    /// shutting down, so a thread of its own drops the lock table, waited
    /// for a few seconds at most.
    fn drop(&mut self) {
        let Some(ours) = self.held.get_mut().take() else { return };
        let client = self.client.clone();
        let pooled = self.pool.get_mut().ok().and_then(|p| p.pop());
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let dropped: sf::Result<()> = rt.block_on(async move {
                    let session = match pooled {
                        Some(s) => s,
                        None => client.create_session().await?,
                    };
                    let relation = Snowflake::lock_relation();
                    let current = session.query(format!("SELECT {} FROM {relation}", D.quote("INFO"))).await?.collect_table().await?;
                    let row = table_rows(&current).ok().and_then(|r| r.rows.into_iter().next()).and_then(|r| r.into_iter().next().flatten());
                    if row.as_deref() == Some(ours.as_str()) {
                        session.query(format!("DROP TABLE IF EXISTS {relation}")).await?.collect_table().await?;
                    }
                    Ok(())
                });
                if let Err(e) = dropped {
                    eprintln!("airlock: warning: could not release the Snowflake deploy lock: {e}");
                }
            }
            let _ = done.send(());
        });
        let _ = wait.recv_timeout(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_cells_become_text() {
        assert_eq!(cell_text(&ColumnType::Date, "19889"), "2024-06-15");
        assert_eq!(cell_text(&ColumnType::Date, "-1"), "1969-12-31");
        assert_eq!(cell_text(&ColumnType::Boolean, "1"), "true");
        assert_eq!(cell_text(&ColumnType::Boolean, "0"), "false");
        assert_eq!(epoch_nanos("1718454645.123456000"), Some((1718454645, 123456000)));
        assert_eq!(epoch_nanos("-1.500000000"), Some((-2, 500000000)));
        assert_eq!(epoch_nanos("7"), Some((7, 0)));
        assert_eq!(epoch_nanos("x.1"), None);
        let t = DateTime::from_timestamp(1718454645, 123_000_000).expect("valid").naive_utc();
        assert_eq!(timestamp_text(&t, ""), "2024-06-15 12:30:45.123");
        let t = DateTime::from_timestamp(1718454645, 0).expect("valid").naive_utc();
        assert_eq!(timestamp_text(&t, "+02:00"), "2024-06-15 12:30:45+02:00");
    }

    #[test]
    fn ctas_targets_are_found_and_other_statements_are_not() {
        assert_eq!(ctas_target("CREATE OR REPLACE TABLE \"A\".\"B c\" AS\nselect 1").as_deref(), Some("\"A\".\"B c\""));
        assert_eq!(ctas_target("create transient table if not exists s.t (a int) as select 1").as_deref(), Some("s.t"));
        assert_eq!(ctas_target("/* x */ CREATE TEMP TABLE t COPY GRANTS AS SELECT 1").as_deref(), Some("t"));
        assert_eq!(ctas_target("CREATE OR REPLACE VIEW v AS SELECT 1"), None);
        assert_eq!(ctas_target("CREATE TABLE t CLONE s AS"), None);
        assert_eq!(ctas_target("CREATE TABLE t (a int)"), None);
        assert_eq!(ctas_target("INSERT INTO t SELECT 1"), None);
    }

    #[test]
    fn seed_types_are_inferred_like_dbt() {
        let infer = |v: &[&str]| infer_type(&v.iter().map(|s| (!s.is_empty()).then_some(*s)).collect::<Vec<_>>());
        assert_eq!(infer(&["1", "", "-3"]), "INTEGER");
        assert_eq!(infer(&["1", "2.5"]), "FLOAT");
        assert_eq!(infer(&["true", "FALSE"]), "BOOLEAN");
        assert_eq!(infer(&["2024-01-02", ""]), "DATE");
        assert_eq!(infer(&["2024-01-02 10:00:00", "2024-01-02T10:00:00.5"]), "TIMESTAMP_NTZ");
        assert_eq!(infer(&["1", "x"]), "VARCHAR");
        assert_eq!(infer(&["", ""]), "VARCHAR");
        assert_eq!(infer(&["nan"]), "VARCHAR");
    }
}
