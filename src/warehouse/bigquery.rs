//! BigQuery, through `gcp-bigquery-client` (BigQuery's REST v2 API). A
//! profile's credentials reach the client here and nowhere else; messages
//! name the project and dataset, never the key.
//!
//! - **Jobs.** Every statement is a query job inserted with a job id airlock
//!   picks (`jobs.insert`), then read with `jobs.getQueryResults` until it is
//!   done, page by page. The id makes a retried insert safe (BigQuery answers
//!   `duplicate` for a job it already took) and lets `cancel` name the job.
//!   Errors are read from the job (`status.errorResult`), from an error
//!   answer's body, and from an `errors` array in a 200 answer.
//! - **Scripts.** A batch with a `TEMP TABLE` runs as one multi-statement
//!   script (temp tables live for the script); a batch of DML only, in
//!   `execute_atomic`, is one `BEGIN TRANSACTION … COMMIT TRANSACTION`
//!   script; anything else runs statement by statement (BigQuery DDL commits
//!   on its own and cannot run in a transaction).
//! - **Retries.** Transport failures, HTTP 429 and 5xx are retried a bounded
//!   number of times, each retry logged; a statement error never is.
//! - **Lock.** `airlock.deploy_lock`, created with its only row by one
//!   `CREATE TABLE … AS SELECT`: creating a table that exists fails, which
//!   makes taking the lock one atomic step; heartbeat and take-over are
//!   compare-and-set `UPDATE`s (`WHERE info = @from`) read by rows affected.
//! - **Names.** BigQuery compares table names exactly and quotes with
//!   backticks; datasets are resolved in the profile's project.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use gcp_bigquery_client as bq;
use bq::error::BQError;
use bq::model::error_proto::ErrorProto;
use bq::model::field_type::FieldType;
use bq::model::get_query_results_parameters::GetQueryResultsParameters;
use bq::model::job::Job;
use bq::model::job_configuration::JobConfiguration;
use bq::model::job_configuration_query::JobConfigurationQuery;
use bq::model::job_reference::JobReference;
use bq::model::query_parameter::QueryParameter;
use bq::model::query_parameter_type::QueryParameterType;
use bq::model::query_parameter_value::QueryParameterValue;
use bq::model::table_field_schema::TableFieldSchema;

use super::{Capabilities, CatalogEntry, Dialect, LockError, LockInfo, ObjectKind, Rows, SeedLoad, Warehouse};
use crate::project::profile::{BigQueryAuth, BigQuerySettings};

const D: Dialect = Dialect::BigQuery;
const LOCK_DATASET: &str = "airlock";
const LOCK_TABLE: &str = "deploy_lock";
/// The pause before each retry of a transient failure; its length bounds the retries.
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(250), Duration::from_secs(1), Duration::from_secs(2)];
/// Seed rows per INSERT, and query parameters per INSERT at most.
const SEED_BATCH_ROWS: usize = 500;
const SEED_BATCH_VALUES: usize = 5_000;
/// How long one `jobs.getQueryResults` call waits for the job.
const POLL_MS: i32 = 10_000;

/// A statement with its named parameters (`@p0` …), all sent as typed values.
#[derive(Debug, Clone, Default)]
struct Statement {
    sql: String,
    params: Vec<(String, &'static str, Option<String>)>,
    dry_run: bool,
}

impl Statement {
    fn new(sql: impl Into<String>) -> Statement {
        Statement { sql: sql.into(), ..Default::default() }
    }
    fn bind(mut self, name: &str, ty: &'static str, value: Option<String>) -> Statement {
        self.params.push((name.to_string(), ty, value));
        self
    }
}

/// What a finished job answered.
#[derive(Debug, Default)]
struct Outcome {
    rows: Rows,
    dml_rows: Option<u64>,
    bytes_processed: Option<u64>,
}

/// A token-less authenticator: a local emulator checks none, and no
/// credential may travel over plain http.
#[derive(Clone)]
struct NoToken;

#[async_trait]
impl bq::auth::Authenticator for NoToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(String::new())
    }
}

pub struct BigQuery {
    settings: BigQuerySettings,
    /// the profile's dataset, the default dataset of every job
    dataset: String,
    /// `profiles.yml target 'dev'`, for messages
    origin: String,
    read_only: bool,
    client: tokio::sync::OnceCell<bq::Client>,
    /// job ids in flight, for `cancel`
    in_flight: Mutex<HashMap<u64, String>>,
    next_id: AtomicU64,
    /// the lock row this process wrote last, while it holds the lock
    held: tokio::sync::Mutex<Option<String>>,
}

impl BigQuery {
    /// A warehouse for `settings`; `dataset` is the profile's dataset.
    /// Connects on first use. `read_only`: plan and history, which never
    /// take the lock.
    pub fn open(settings: BigQuerySettings, dataset: &str, origin: String, read_only: bool) -> Result<BigQuery> {
        Ok(BigQuery {
            settings,
            dataset: dataset.to_string(),
            origin,
            read_only,
            client: tokio::sync::OnceCell::new(),
            in_flight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            held: tokio::sync::Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<&bq::Client> {
        self.client.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<bq::Client> {
        let mut builder = bq::client_builder::ClientBuilder::new();
        builder.with_v2_base_url(self.settings.v2_base_url());
        let project = &self.settings.project;
        let built = if self.settings.local_emulator() {
            builder.build_from_authenticator(Arc::new(NoToken)).await
        } else {
            match &self.settings.auth {
                BigQueryAuth::ServiceAccount { key, origin } => {
                    // checked when the profile was read; parsed again here without echoing it
                    let sa: bq::yup_oauth2::ServiceAccountKey = serde_json::from_str(key.expose())
                        .map_err(|_| anyhow!("{}: {origin} is not a service account key the client can read", self.origin))?;
                    builder.build_from_service_account_key(sa, false).await
                }
                BigQueryAuth::ApplicationDefault => builder.build_from_application_default_credentials().await,
            }
        };
        built.map_err(|e| anyhow!("cannot set up the BigQuery client for project '{project}' ({}): {}", self.origin, redact(&e.to_string())))
    }

    fn job_id(&self) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!("airlock_{}_{}_{nanos}", std::process::id(), self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn job(&self, stmt: &Statement, job_id: &str) -> Job {
        let params: Vec<QueryParameter> = stmt
            .params
            .iter()
            .map(|(name, ty, value)| QueryParameter {
                name: Some(name.clone()),
                parameter_type: Some(QueryParameterType { r#type: ty.to_string(), ..Default::default() }),
                parameter_value: Some(QueryParameterValue { value: value.clone(), ..Default::default() }),
            })
            .collect();
        let query = JobConfigurationQuery {
            query: stmt.sql.clone(),
            use_legacy_sql: Some(false),
            // no default dataset: every name airlock writes is dataset-qualified, and
            // the profile's dataset may not exist yet (the first deploy makes it)
            parameter_mode: (!params.is_empty()).then(|| "NAMED".to_string()),
            query_parameters: (!params.is_empty()).then_some(params),
            maximum_bytes_billed: self.settings.maximum_bytes_billed.map(|b| b.to_string()),
            priority: self.settings.priority.as_ref().map(|p| p.to_ascii_uppercase()),
            ..Default::default()
        };
        Job {
            configuration: Some(JobConfiguration {
                query: Some(query),
                dry_run: stmt.dry_run.then_some(true),
                job_timeout_ms: self.settings.job_execution_timeout_seconds.map(|s| (s * 1000).to_string()),
                labels: Some(HashMap::from([("tool".to_string(), "airlock".to_string())])),
                ..Default::default()
            }),
            job_reference: Some(JobReference { job_id: Some(job_id.to_string()), location: self.settings.location.clone(), project_id: Some(self.settings.project.clone()) }),
            ..Default::default()
        }
    }

    async fn pause(&self, attempt: usize, what: &str, why: &str) {
        let delay = RETRY_DELAYS[attempt];
        tracing::warn!("BigQuery {what} at {} failed ({why}); retry {} of {} in {delay:?}", self.settings.v2_base_url(), attempt + 1, RETRY_DELAYS.len());
        tokio::time::sleep(delay).await;
    }

    /// Run one statement (a job) to completion, with its whole result.
    async fn run(&self, stmt: &Statement) -> Result<Outcome> {
        let client = self.client().await?;
        let job_id = self.job_id();
        let local = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.in_flight.lock().expect("in-flight poisoned").insert(local, job_id.clone());
        let result = self.run_job(client, stmt, &job_id).await;
        self.in_flight.lock().expect("in-flight poisoned").remove(&local);
        result
    }

    async fn run_job(&self, client: &bq::Client, stmt: &Statement, job_id: &str) -> Result<Outcome> {
        let project = self.settings.project.as_str();
        let job = self.job(stmt, job_id);
        // insert: retried on transient failures; `duplicate` on our own id means it was taken
        let mut attempt = 0;
        let inserted = loop {
            match client.job().insert(project, job.clone()).await {
                Ok(j) => break Some(j),
                Err(e) => match transient(&e) {
                    Some(why) if attempt < RETRY_DELAYS.len() => {
                        self.pause(attempt, "job submission", &why).await;
                        attempt += 1;
                    }
                    Some(_) => return Err(self.gave_up(&e, attempt + 1)),
                    None if attempt > 0 && reason(&e).as_deref() == Some("duplicate") => break None,
                    None => return Err(self.statement_error(&e)),
                },
            }
        };
        if let Some(j) = &inserted {
            if let Some(status) = &j.status {
                if let Some(err) = &status.error_result {
                    return Err(self.hint(job_error(err, status.errors.as_deref()), err.reason.as_deref(), err.message.as_deref()));
                }
            }
            if stmt.dry_run {
                let bytes = j.statistics.as_ref().and_then(|s| s.total_bytes_processed.as_deref().or(s.query.as_ref().and_then(|q| q.total_bytes_processed.as_deref()))).and_then(|b| b.parse().ok());
                return Ok(Outcome { bytes_processed: Some(bytes.unwrap_or(0)), ..Default::default() });
            }
        }
        // results, page by page, once the job is done
        let location = inserted.as_ref().and_then(|j| j.job_reference.as_ref()).and_then(|r| r.location.clone()).or_else(|| self.settings.location.clone());
        let mut out = Outcome::default();
        let mut page_token: Option<String> = None;
        let mut fields: Option<Vec<TableFieldSchema>> = None;
        let mut attempt = 0;
        loop {
            let params = GetQueryResultsParameters {
                // not `formatOptions`: the client sends these as a URL query, which cannot hold it
                format_options: None,
                location: location.clone(),
                max_results: None,
                page_token: page_token.clone(),
                start_index: None,
                timeout_ms: Some(POLL_MS),
            };
            let page = match client.job().get_query_results(project, job_id, params).await {
                Ok(p) => p,
                Err(e) => match transient(&e) {
                    Some(why) if attempt < RETRY_DELAYS.len() => {
                        self.pause(attempt, "reading a job's results", &why).await;
                        attempt += 1;
                        continue;
                    }
                    Some(_) => return Err(self.gave_up(&e, attempt + 1)),
                    None => return Err(self.statement_error(&e)),
                },
            };
            if let Some(errors) = page.errors.as_deref().filter(|e| !e.is_empty()) {
                return Err(self.hint(job_error(&errors[0], Some(errors)), errors[0].reason.as_deref(), errors[0].message.as_deref()));
            }
            if page.job_complete != Some(true) {
                continue;
            }
            if fields.is_none() {
                fields = Some(page.schema.as_ref().and_then(|s| s.fields.clone()).unwrap_or_default());
                out.rows.columns = fields.iter().flatten().map(|f| f.name.clone()).collect();
                out.dml_rows = page.num_dml_affected_rows.as_deref().and_then(|n| n.parse().ok());
                out.bytes_processed = page.total_bytes_processed.as_deref().and_then(|n| n.parse().ok());
            }
            let schema = fields.as_deref().unwrap_or_default();
            for row in page.rows.unwrap_or_default() {
                let cells = row.columns.unwrap_or_default();
                out.rows.rows.push(schema.iter().enumerate().map(|(i, f)| cells.get(i).and_then(|c| c.value.as_ref()).and_then(|v| cell_text(f, v))).collect());
            }
            match page.page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => break,
            }
        }
        // rows written: documented in the job's statistics (the results may omit them)
        if out.dml_rows.is_none() && out.rows.columns.is_empty() {
            let done = match inserted.filter(|j| j.status.as_ref().and_then(|s| s.state.as_deref()) == Some("DONE")) {
                Some(j) => Some(j),
                None => client.job().get_job(project, job_id, location.as_deref()).await.ok(),
            };
            out.dml_rows = done.and_then(|j| j.statistics).and_then(|s| s.query).and_then(|q| q.num_dml_affected_rows).and_then(|n| n.parse().ok());
        }
        Ok(out)
    }

    /// A transport failure or an HTTP error answer, after `attempts` tries.
    fn gave_up(&self, e: &BQError, attempts: usize) -> anyhow::Error {
        let tries = format!("{attempts} attempt{}", if attempts == 1 { "" } else { "s" });
        match e {
            BQError::ResponseError { error } => anyhow!("BigQuery at {} for project '{}' failed ({tries}): HTTP {}: {}", self.settings.v2_base_url(), self.settings.project, error.error.code, error.error.message),
            other => anyhow!(
                "cannot reach BigQuery for project '{}' at {} ({tries}): {}; check {} in {}",
                self.settings.project,
                self.settings.v2_base_url(),
                root_cause(other),
                if self.settings.api_endpoint.is_some() { "`api_endpoint`" } else { "the network" },
                self.origin
            ),
        }
    }

    /// A job's error with what to fix where BigQuery's words point at the profile.
    fn hint(&self, e: anyhow::Error, reason: Option<&str>, message: Option<&str>) -> anyhow::Error {
        match reason {
            Some("bytesBilledLimitExceeded") => e.context(self.bytes_billed_hint()),
            Some("accessDenied") => e.context(format!("the credentials of {} lack a permission on project '{}'", self.origin, self.settings.project)),
            Some("notFound") if message.is_some_and(|m| m.contains("Project")) => {
                e.context(format!("the project '{}' named in {} does not exist, or these credentials may not use it", self.settings.project, self.origin))
            }
            _ => e,
        }
    }

    /// A statement's error in BigQuery's words, with what to fix where they
    /// point at the profile (its project, a permission).
    fn statement_error(&self, e: &BQError) -> anyhow::Error {
        match e {
            BQError::ResponseError { error } => {
                let err = &error.error;
                let reason = err.errors.first().and_then(|e| e.get("reason")).cloned().unwrap_or_default();
                let text = format!("BigQuery error ({reason}, HTTP {}): {}", err.code, err.message);
                match reason.as_str() {
                    "notFound" if err.message.contains("Project") => anyhow!("{text} (the project '{}' named in {} does not exist, or these credentials may not use it)", self.settings.project, self.origin),
                    "accessDenied" => anyhow!("{text} (the credentials of {} lack this permission on project '{}')", self.origin, self.settings.project),
                    "bytesBilledLimitExceeded" => anyhow!("{text}").context(self.bytes_billed_hint()),
                    "invalid" | "authError" if err.code == 401 => anyhow!("{text} (the credentials of {} were refused)", self.origin),
                    _ => anyhow!("{text}"),
                }
            }
            BQError::AuthError(_) | BQError::YupAuthError(_) | BQError::NoToken => anyhow!("BigQuery sign-in failed for project '{}' ({}): {}", self.settings.project, self.origin, redact(&e.to_string())),
            other => anyhow!("BigQuery request failed: {}", redact(&chain(other))),
        }
    }

    fn bytes_billed_hint(&self) -> String {
        let limit = self.settings.maximum_bytes_billed.map(|b| b.to_string()).unwrap_or_else(|| "?".into());
        format!("the query would bill more than maximum_bytes_billed = {limit} in {}; the job did not run (raise the limit to run it)", self.origin)
    }

    async fn query_statement(&self, stmt: &Statement) -> Result<Rows> {
        Ok(self.run(stmt).await?.rows)
    }

    /// Statements in order, each its own job, with which one failed.
    async fn run_each(&self, stmts: &[String], atomic: bool) -> Result<()> {
        for (i, sql) in stmts.iter().enumerate() {
            if atomic {
                // tests: a batch killed or failing at its K-th step
                crate::failpoint::in_atomic_batch(i)?;
            }
            let first_line = sql.trim().lines().next().unwrap_or_default();
            self.run(&Statement::new(sql.as_str())).await.with_context(|| format!("statement {} of {}: {first_line}", i + 1, stmts.len()))?;
        }
        Ok(())
    }

    /// One multi-statement script job.
    async fn run_script(&self, stmts: &[String], transaction: bool) -> Result<()> {
        let mut body: Vec<String> = stmts.iter().map(|s| s.trim().trim_end_matches(';').to_string()).collect();
        if transaction {
            body.insert(0, "BEGIN TRANSACTION".into());
            body.push("COMMIT TRANSACTION".into());
        }
        let script = body.join(";\n") + ";";
        let what = if transaction { "; the transaction is rolled back" } else { "" };
        self.run(&Statement::new(script)).await.with_context(|| format!("a script of {} statements failed{what}", stmts.len())).map(|_| ())
    }

    fn lock_relation() -> String {
        D.relation(LOCK_DATASET, LOCK_TABLE)
    }

    /// The lock row as stored, or None when there is no lock table.
    async fn read_lock_row(&self) -> Result<Option<String>> {
        let select = Statement::new(format!("SELECT info FROM {}", Self::lock_relation()));
        match self.query_statement(&select).await {
            Ok(rows) => Ok(Some(rows.rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_default())),
            Err(e) => {
                // the usual reason is that nobody holds the lock: confirm it
                let exists = Statement::new(format!("SELECT COUNT(*) FROM {}.INFORMATION_SCHEMA.TABLES WHERE table_name = @name", D.quote(LOCK_DATASET))).bind("name", "STRING", Some(LOCK_TABLE.into()));
                match self.query_statement(&exists).await {
                    Ok(rows) if rows.rows.first().and_then(|r| r.first()).cloned().flatten().as_deref() == Some("0") => Ok(None),
                    // no `airlock` dataset at all
                    Err(gone) if format!("{gone:#}").contains("notFound") => Ok(None),
                    _ => Err(e.context(format!("cannot read the deploy lock {}", Self::lock_relation()))),
                }
            }
        }
    }

    /// `UPDATE` the lock row from `from` to `to`; the rows it changed.
    async fn swap_lock_row(&self, from: &str, to: &str) -> Result<u64> {
        let update = Statement::new(format!("UPDATE {} SET info = @to WHERE info = @from", Self::lock_relation()))
            .bind("to", "STRING", Some(to.to_string()))
            .bind("from", "STRING", Some(from.to_string()));
        Ok(self.run(&update).await?.dml_rows.unwrap_or(0))
    }

    /// The bytes a statement would process, from a dry run (nothing runs).
    pub async fn dry_run(&self, sql: &str) -> Result<u64> {
        let stmt = Statement { sql: sql.to_string(), params: Vec::new(), dry_run: true };
        Ok(self.run(&stmt).await?.bytes_processed.unwrap_or(0))
    }
}

/// The `reason` of an error answer (`notFound`, `duplicate`, `accessDenied`).
fn reason(e: &BQError) -> Option<String> {
    match e {
        BQError::ResponseError { error } => error.error.errors.first().and_then(|e| e.get("reason")).cloned(),
        _ => None,
    }
}

/// Why a failure is worth retrying (the request never reached BigQuery, or
/// BigQuery asked to come back), or None.
fn transient(e: &BQError) -> Option<String> {
    match e {
        BQError::RequestError(r) if r.is_connect() || r.is_timeout() || r.is_request() => Some(root_cause(r)),
        BQError::ResponseError { error } if error.error.code == 429 || (500..600).contains(&error.error.code) => Some(format!("HTTP {}", error.error.code)),
        BQError::ResponseError { error } if error.error.errors.iter().any(|e| matches!(e.get("reason").map(String::as_str), Some("rateLimitExceeded" | "backendError" | "internalError"))) => {
            Some(format!("HTTP {}", error.error.code))
        }
        _ => None,
    }
}

/// A failed job's error result, with its other errors where they add to it.
fn job_error(first: &ErrorProto, all: Option<&[ErrorProto]>) -> anyhow::Error {
    let reason = first.reason.clone().unwrap_or_else(|| "error".into());
    let mut text = format!("BigQuery error ({reason}): {}", first.message.as_deref().unwrap_or("the job failed"));
    for e in all.unwrap_or_default().iter().skip(1).take(3) {
        if let Some(m) = e.message.as_deref().filter(|m| Some(*m) != first.message.as_deref()) {
            text.push_str(&format!("; {m}"));
        }
    }
    anyhow!("{text}")
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

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// An error text with anything that looks like key material cut out: the
/// OAuth library may quote what it could not parse.
fn redact(text: &str) -> String {
    match text.find("-----BEGIN") {
        Some(at) => format!("{}[key material removed]", &text[..at]),
        None => text.to_string(),
    }
}

/// A cell of BigQuery's JSON result encoding as text: timestamps (epoch
/// seconds with a fraction, or int64 microseconds) as `YYYY-MM-DD HH:MM:SS[.ffffff]` UTC, datetimes
/// with a space, repeated and nested values as JSON, the rest as sent.
fn cell_text(field: &TableFieldSchema, v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    if field.mode.as_deref() == Some("REPEATED") || matches!(field.r#type, FieldType::Record | FieldType::Struct) {
        return (!v.is_null()).then(|| v.to_string());
    }
    let raw = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(match field.r#type {
        FieldType::Timestamp => timestamp_text(&raw).unwrap_or(raw),
        FieldType::Datetime => raw.replacen('T', " ", 1),
        _ => raw,
    })
}

/// Microseconds (or seconds with a fraction, as BigQuery sends by default)
/// since the epoch as `YYYY-MM-DD HH:MM:SS[.ffffff]`, trailing zeros dropped.
fn timestamp_text(raw: &str) -> Option<String> {
    let micros: i64 = match raw.parse::<i64>() {
        Ok(m) => m,
        Err(_) => (raw.parse::<f64>().ok()? * 1e6).round() as i64,
    };
    let t = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
    let mut text = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.pop();
    }
    Some(text)
}

/// A seed column's BigQuery type from the type inferred like dbt does.
fn seed_type(inferred: &str) -> &'static str {
    match inferred {
        "BOOLEAN" => "BOOL",
        "INTEGER" => "INT64",
        "FLOAT" => "FLOAT64",
        "DATE" => "DATE",
        "TIMESTAMP_NTZ" => "DATETIME",
        _ => "STRING",
    }
}

#[async_trait]
impl Warehouse for BigQuery {
    fn dialect(&self) -> Dialect {
        D
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            transactional_ddl: false,
            schema_swap: false,
            database_swap: false,
            zero_copy_clone: true,
            dml_transactions: true,
            sessions: true,
            seed_loading: true,
        }
    }

    fn describe(&self) -> String {
        format!("BigQuery project {} dataset {}", self.settings.project, self.dataset)
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        self.run(&Statement::new(sql)).await.map(|_| ())
    }

    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        let out = self.run(&Statement::new(sql)).await?;
        if out.dml_rows.is_some() {
            return Ok(out.dml_rows);
        }
        // a CTAS answers no row count: count the table it made (a metadata read on BigQuery)
        let Some(target) = ctas_target(sql) else { return Ok(None) };
        match self.query_statement(&Statement::new(format!("SELECT COUNT(*) FROM {target}"))).await {
            Ok(rows) => Ok(rows.rows.first().and_then(|r| r.first()).cloned().flatten().and_then(|n| n.parse().ok())),
            Err(e) => {
                tracing::debug!("could not count the rows of {target}: {e:#}");
                Ok(None)
            }
        }
    }

    async fn query(&self, sql: &str) -> Result<Rows> {
        self.query_statement(&Statement::new(sql)).await
    }

    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        if statements.iter().any(|s| has_temp_table(s)) {
            self.run_script(statements, false).await
        } else if statements.len() > 1 && statements.iter().all(|s| is_dml(s)) {
            crate::failpoint::in_atomic_batch(0)?;
            self.run_script(statements, true).await
        } else {
            // DDL commits on its own on BigQuery: statement by statement
            self.run_each(statements, true).await
        }
    }

    async fn execute_script(&self, statements: &[String]) -> Result<()> {
        if statements.iter().any(|s| has_temp_table(s)) {
            self.run_script(statements, false).await
        } else {
            self.run_each(statements, false).await
        }
    }

    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>> {
        let (header, rows) = super::snowflake::read_csv(&seed.file)?;
        D.split_relation(&seed.target).ok_or_else(|| anyhow!("seed target {} is not a quoted dataset.name", seed.target))?;
        let columns: Vec<String> = header.iter().map(|h| D.quote(h)).collect();
        let types: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let configured = seed.column_types.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)).map(|(_, t)| t.clone());
                configured.unwrap_or_else(|| seed_type(super::snowflake::infer_type(&rows.iter().map(|r| r.get(i).and_then(|v| v.as_deref())).collect::<Vec<_>>())).to_string())
            })
            .collect();
        let definitions = columns.iter().zip(&types).map(|(c, t)| format!("{c} {t}")).collect::<Vec<_>>().join(", ");
        self.run(&Statement::new(format!("CREATE OR REPLACE TABLE {} ({definitions})", seed.target))).await.with_context(|| format!("creating seed table {}", seed.target))?;
        // values go in as STRING query parameters cast to the column's type: no value is ever SQL text
        let per_batch = (SEED_BATCH_VALUES / columns.len()).clamp(1, SEED_BATCH_ROWS);
        let mut loaded = 0u64;
        for batch in rows.chunks(per_batch) {
            let mut stmt = Statement::default();
            let mut tuples = Vec::with_capacity(batch.len());
            for (r, row) in batch.iter().enumerate() {
                let cells: Vec<String> = (0..columns.len())
                    .map(|c| {
                        let name = format!("v{r}_{c}");
                        stmt.params.push((name.clone(), "STRING", row.get(c).cloned().flatten()));
                        format!("CAST(@{name} AS {})", types[c])
                    })
                    .collect();
                tuples.push(format!("({})", cells.join(", ")));
            }
            stmt.sql = format!("INSERT INTO {} ({}) VALUES {}", seed.target, columns.join(", "), tuples.join(", "));
            let written = self.run(&stmt).await.with_context(|| format!("loading seed {} into {}", seed.file.display(), seed.target))?;
            loaded += written.dml_rows.unwrap_or(batch.len() as u64);
        }
        Ok(Some(loaded))
    }

    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        // one query per dataset (INFORMATION_SCHEMA is per dataset or region);
        // a dataset that does not exist holds nothing
        let mut out = Vec::new();
        for schema in schemas {
            let ds = D.quote(schema);
            let sql = format!(
                "SELECT t.table_name, t.table_type, v.view_definition FROM {ds}.INFORMATION_SCHEMA.TABLES AS t \
                 LEFT JOIN {ds}.INFORMATION_SCHEMA.VIEWS AS v ON v.table_name = t.table_name ORDER BY t.table_name"
            );
            let rows = match self.query_statement(&Statement::new(sql)).await {
                Ok(rows) => rows,
                Err(e) if format!("{e:#}").contains("(notFound") => continue,
                Err(e) => return Err(e.context(format!("reading the BigQuery catalog of dataset {schema}"))),
            };
            for r in rows.rows {
                let cell = |i: usize| r.get(i).cloned().flatten();
                let name = cell(0).unwrap_or_default();
                let kind = match cell(1).as_deref() {
                    Some("VIEW") | Some("MATERIALIZED VIEW") => ObjectKind::View,
                    _ => ObjectKind::Table,
                };
                let view_ddl = (kind == ObjectKind::View).then(|| format!("CREATE OR REPLACE VIEW {} AS\n{}", D.relation(schema, &name), cell(2).unwrap_or_default().trim()));
                out.push(CatalogEntry { schema: schema.clone(), name, kind, view_ddl, rows: None });
            }
        }
        Ok(out)
    }

    async fn lock(&self, info: &LockInfo) -> Result<(), LockError> {
        if self.read_only {
            return Err(LockError::Other(anyhow!("{} is open read-only; no lock can be taken", self.describe())));
        }
        let json = serde_json::to_string(info).map_err(|e| LockError::Other(e.into()))?;
        let mut held = self.held.lock().await;
        self.execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", D.quote(LOCK_DATASET))).await?;
        let create = format!("CREATE TABLE {} AS SELECT {} AS info", Self::lock_relation(), D.literal(&json));
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
        // a write whose count did not come back is judged by the row itself
        if self.swap_lock_row(&ours, &json).await? != 1 && self.read_lock_row().await?.as_deref() != Some(json.as_str()) {
            let now = self.lock_holder().await?.map(|h| h.describe()).unwrap_or_else(|| "nobody".into());
            anyhow::bail!("this run no longer holds the deploy lock on {} (now held by {now})", self.describe());
        }
        *held = Some(json);
        Ok(())
    }

    async fn unlock(&self) -> Result<()> {
        let mut held = self.held.lock().await;
        let Some(ours) = held.clone() else { return Ok(()) };
        match self.read_lock_row().await? {
            Some(row) if !same_holder(&row, &ours) => tracing::warn!("the deploy lock on {} was taken over; left to its new holder", self.describe()),
            Some(_) => self.execute(&format!("DROP TABLE IF EXISTS {}", Self::lock_relation())).await?,
            None => {}
        }
        *held = None;
        Ok(())
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>> {
        Ok(self.read_lock_row().await?.map(|row| {
            serde_json::from_str(&row).unwrap_or_else(|_| LockInfo { release: None, command: "unknown".into(), started_at: "unknown".into(), pid: 0, host: "unknown".into(), heartbeat: None })
        }))
    }

    async fn take_over_lock(&self, expected: &LockInfo, ours: &LockInfo) -> Result<()> {
        let mut held = self.held.lock().await;
        let current = self.read_lock_row().await?;
        let parsed = current.as_deref().and_then(|row| serde_json::from_str::<LockInfo>(row).ok());
        let json = serde_json::to_string(ours)?;
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

    async fn dry_run_bytes(&self, sql: &str) -> Result<Option<u64>> {
        self.dry_run(sql).await.map(Some)
    }

    async fn check_reads(&self, reads: &[(String, String, String)]) -> Result<()> {
        // one INFORMATION_SCHEMA read per dataset: notFound is a dataset that does not exist
        let mut datasets: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
        for (what, schema, name) in reads {
            datasets.entry(schema.as_str()).or_default().push((what.as_str(), name.as_str()));
        }
        let mut missing = Vec::new();
        for (dataset, tables) in datasets {
            let sql = format!("SELECT table_name FROM {}.INFORMATION_SCHEMA.TABLES", D.quote(dataset));
            let found: Vec<String> = match self.query_statement(&Statement::new(sql)).await {
                Ok(rows) => rows.rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect(),
                Err(e) if format!("{e:#}").contains("(notFound") && !format!("{e:#}").contains("Project") => {
                    let whats: Vec<&str> = tables.iter().map(|(w, _)| *w).collect();
                    missing.push(format!("{} reads dataset '{dataset}', which does not exist in BigQuery project '{}'", whats.join(", "), self.settings.project));
                    continue;
                }
                // the project itself: its error says so, and names the profile
                Err(e) if format!("{e:#}").contains("Not found: Project") => return Err(e),
                Err(e) => return Err(e.context(format!("checking that dataset '{dataset}' exists in BigQuery project '{}' ({})", self.settings.project, self.origin))),
            };
            for (what, name) in tables {
                if !found.iter().any(|f| f == name) {
                    missing.push(format!("{what} reads table '{dataset}.{name}', which does not exist in BigQuery project '{}'", self.settings.project));
                }
            }
        }
        if !missing.is_empty() {
            anyhow::bail!("{} (checked before anything was written; nothing was)", missing.join("; "));
        }
        Ok(())
    }

    async fn table_layouts(&self, schema: &str) -> Result<std::collections::BTreeMap<String, String>> {
        let sql = format!(
            "SELECT table_name, column_name, is_partitioning_column, clustering_ordinal_position FROM {}.INFORMATION_SCHEMA.COLUMNS \
             WHERE is_partitioning_column = 'YES' OR clustering_ordinal_position IS NOT NULL ORDER BY table_name, clustering_ordinal_position",
            D.quote(schema)
        );
        let rows = match self.query_statement(&Statement::new(sql)).await {
            Ok(rows) => rows,
            Err(e) if format!("{e:#}").contains("(notFound") => return Ok(Default::default()),
            Err(e) => return Err(e.context(format!("reading the partitioning and clustering of dataset {schema}"))),
        };
        Ok(layouts_of(&rows.rows))
    }

    async fn cancel(&self) {
        let jobs: Vec<String> = self.in_flight.lock().expect("in-flight poisoned").drain().map(|(_, j)| j).collect();
        let Some(client) = self.client.get() else { return };
        for job in jobs {
            let cancel = client.job().cancel_job(&self.settings.project, &job, self.settings.location.as_deref());
            match tokio::time::timeout(Duration::from_secs(10), cancel).await {
                Ok(Ok(_)) => tracing::info!("cancelled BigQuery job {job}"),
                Ok(Err(e)) => tracing::warn!("could not cancel BigQuery job {job}: {}", redact(&e.to_string())),
                Err(_) => tracing::warn!("cancelling BigQuery job {job} timed out"),
            }
        }
    }
}

/// The table a `CREATE [OR REPLACE] TABLE name AS …` creates, as written;
/// None for anything else (a clone, a snapshot, a view, DML).
fn ctas_target(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql.split_whitespace().take(6).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let at = match upper.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["CREATE", "TABLE", ..] => 2,
        ["CREATE", "OR", "REPLACE", "TABLE", ..] => 4,
        _ => return None,
    };
    // the name: backtick-quoted parts joined by dots, possibly with spaces inside
    let start = sql.find(words[at - 1]).map(|i| i + words[at - 1].len())?;
    let rest = sql[start..].trim_start();
    let (mut name, mut quoted, mut end) = (String::new(), false, rest.len());
    for (i, c) in rest.char_indices() {
        match c {
            '`' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                end = i;
                break;
            }
            _ => {}
        }
        name.push(c);
    }
    let after = rest[end..].trim_start();
    let is_as = after.len() >= 2 && after[..2].eq_ignore_ascii_case("AS") && after[2..].starts_with(|c: char| c.is_whitespace() || c == '(');
    (is_as && !name.is_empty()).then_some(name)
}

/// Whether the lock row `row` was written by the process that wrote `ours`
/// (the heartbeat may differ): that process may still release it.
fn same_holder(row: &str, ours: &str) -> bool {
    if row == ours {
        return true;
    }
    match (serde_json::from_str::<LockInfo>(row), serde_json::from_str::<LockInfo>(ours)) {
        (Ok(a), Ok(b)) => (a.pid, &a.host, &a.started_at, &a.command, a.release) == (b.pid, &b.host, &b.started_at, &b.command, b.release),
        _ => false,
    }
}

/// Rows of (table, column, is_partitioning_column, clustering_ordinal_position)
/// as each table's layout: `partition by d; cluster by a, b`.
fn layouts_of(rows: &[Vec<Option<String>>]) -> std::collections::BTreeMap<String, String> {
    let mut parts: std::collections::BTreeMap<String, (Vec<String>, Vec<(u32, String)>)> = Default::default();
    for r in rows {
        let cell = |i: usize| r.get(i).cloned().flatten();
        let (Some(table), Some(column)) = (cell(0), cell(1)) else { continue };
        let entry = parts.entry(table).or_default();
        if cell(2).as_deref() == Some("YES") {
            entry.0.push(column.clone());
        }
        if let Some(n) = cell(3).and_then(|n| n.parse().ok()) {
            entry.1.push((n, column));
        }
    }
    parts
        .into_iter()
        .map(|(table, (partition, mut cluster))| {
            cluster.sort();
            let mut text = Vec::new();
            if !partition.is_empty() {
                text.push(format!("partition by {}", partition.join(", ")));
            }
            if !cluster.is_empty() {
                text.push(format!("cluster by {}", cluster.into_iter().map(|(_, c)| c).collect::<Vec<_>>().join(", ")));
            }
            (table, text.join("; "))
        })
        .collect()
}

fn has_temp_table(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    upper.contains("TEMP TABLE") || upper.contains("TEMPORARY TABLE")
}

fn is_dml(sql: &str) -> bool {
    let first = sql.trim_start().split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(first.as_str(), "INSERT" | "UPDATE" | "DELETE" | "MERGE")
}

impl Drop for BigQuery {
    /// Never leave the lock behind on an error path: a thread of its own
    /// drops the lock table (if it is still ours), waited for a few seconds.
    fn drop(&mut self) {
        let Some(ours) = self.held.get_mut().take() else { return };
        let Some(client) = self.client.get().cloned() else { return };
        let settings = self.settings.clone();
        let dataset = self.dataset.clone();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let released: Result<()> = rt.block_on(async move {
                    let wh = BigQuery::open(settings, &dataset, String::new(), false)?;
                    wh.client.set(client).ok();
                    let row = wh.read_lock_row().await?;
                    if row.as_deref().is_some_and(|r| same_holder(r, &ours)) {
                        wh.execute(&format!("DROP TABLE IF EXISTS {}", BigQuery::lock_relation())).await?;
                    }
                    Ok(())
                });
                if let Err(e) = released {
                    eprintln!("airlock: warning: could not release the BigQuery deploy lock: {e:#}");
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
    fn timestamps_become_text() {
        assert_eq!(timestamp_text("1718454645123000").as_deref(), Some("2024-06-15 12:30:45.123"));
        assert_eq!(timestamp_text("1718454645000000").as_deref(), Some("2024-06-15 12:30:45"));
        assert_eq!(timestamp_text("1.718454645E9").as_deref(), Some("2024-06-15 12:30:45"));
        assert_eq!(timestamp_text("x"), None);
    }

    #[test]
    fn temp_tables_and_dml_are_recognised() {
        assert!(has_temp_table("CREATE OR REPLACE TEMP TABLE `x` AS SELECT 1"));
        assert!(!has_temp_table("CREATE TABLE `x` AS SELECT 1"));
        assert!(is_dml("  insert into t values (1)") && is_dml("MERGE t USING s ON 1=1"));
        assert!(!is_dml("CREATE TABLE t (a INT64)"));
    }

    #[test]
    fn ctas_targets_are_found_and_clones_are_not() {
        assert_eq!(ctas_target("CREATE OR REPLACE TABLE `a b`.`c` AS\nselect 1").as_deref(), Some("`a b`.`c`"));
        assert_eq!(ctas_target("create table `s`.`t` as select 1").as_deref(), Some("`s`.`t`"));
        assert_eq!(ctas_target("CREATE OR REPLACE TABLE `s`.`t` CLONE `s`.`u`"), None);
        assert_eq!(ctas_target("CREATE SNAPSHOT TABLE `s`.`t` CLONE `s`.`u`"), None);
        assert_eq!(ctas_target("CREATE OR REPLACE VIEW `s`.`v` AS SELECT 1"), None);
        assert_eq!(ctas_target("INSERT INTO `s`.`t` SELECT 1"), None);
    }

    #[test]
    fn layouts_name_partitioning_then_clustering_in_order() {
        let row = |t: &str, c: &str, p: &str, o: Option<&str>| vec![Some(t.to_string()), Some(c.to_string()), Some(p.to_string()), o.map(str::to_string)];
        let rows = vec![row("a", "s", "NO", Some("2")), row("a", "d", "YES", None), row("a", "x", "NO", Some("1")), row("b", "d", "YES", None)];
        let layouts = layouts_of(&rows);
        assert_eq!(layouts["a"], "partition by d; cluster by x, s");
        assert_eq!(layouts["b"], "partition by d");
    }

    #[test]
    fn key_material_is_cut_from_error_text() {
        assert_eq!(redact("bad key: -----BEGIN PRIVATE KEY-----\nMIIE"), "bad key: [key material removed]");
    }
}
