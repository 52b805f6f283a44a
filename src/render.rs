//! The minijinja environment that renders models, tests and profiles the way
//! dbt's Jinja does: `ref`, `source`, `config`, `var`, `env_var`, `this`,
//! `target`, `is_incremental()` and the project's own macros.
//!
//! One render = one [`RenderScope`]: it says where each relation lives for this
//! render (audit, prod, CTE) and records what the template referenced and
//! configured, which is how dependencies are discovered.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use minijinja::value::{Kwargs, Object, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};

use crate::project::{MacroFile, NodeId};

/// A relation as a template sees it: renders as its quoted name and exposes
/// `database`, `schema`, `identifier` like dbt's Relation.
#[derive(Debug, Clone)]
pub struct Relation {
    pub database: Option<String>,
    pub schema: String,
    pub identifier: String,
    /// the text that goes into SQL (quoted name, CTE name or file read)
    pub rendered: String,
}

impl Object for Relation {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "database" => Some(Value::from(self.database.clone())),
            "schema" => Some(Value::from(self.schema.clone())),
            "identifier" | "name" | "table" => Some(Value::from(self.identifier.clone())),
            _ => None,
        }
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

/// Names a template can reference.
#[derive(Debug, Default)]
pub struct Names {
    pub project: String,
    /// models and seeds by name
    pub refs: HashMap<String, NodeId>,
    /// `(source, table)` -> source node
    pub sources: HashMap<(String, String), NodeId>,
    /// names of disabled models, for a better error
    pub disabled: HashMap<String, String>,
}

/// Where each node's relation is for this render.
pub type Placement = Arc<dyn Fn(&str) -> Relation + Send + Sync>;

/// What a render referenced and configured.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub refs: Vec<NodeId>,
    pub sources: Vec<NodeId>,
    pub config: Vec<(String, serde_json::Value)>,
    /// an error raised by one of our functions, with a hint to put after the location
    pub error: Option<(String, String)>,
}

pub struct RenderScope {
    pub names: Arc<Names>,
    pub place: Placement,
    pub is_incremental: bool,
    pub this: Option<Relation>,
    /// `target` as this render sees it, when not the profile's (hooks run in
    /// the audit location and see its schema)
    pub target: Option<serde_json::Value>,
    pub recorded: Mutex<Recorded>,
}

impl fmt::Debug for RenderScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderScope").field("this", &self.this).finish()
    }
}

impl RenderScope {
    pub fn new(names: Arc<Names>, place: Placement, this: Option<Relation>, is_incremental: bool) -> Arc<Self> {
        Arc::new(RenderScope { names, place, is_incremental, this, target: None, recorded: Mutex::new(Recorded::default()) })
    }
    pub fn with_target(names: Arc<Names>, place: Placement, this: Option<Relation>, target: serde_json::Value) -> Arc<Self> {
        Arc::new(RenderScope { names, place, is_incremental: false, this, target: Some(target), recorded: Mutex::new(Recorded::default()) })
    }
    pub fn take(&self) -> Recorded {
        std::mem::take(&mut self.recorded.lock().expect("render scope poisoned"))
    }
    fn fail(&self, msg: String, hint: String) -> Error {
        let err = Error::new(ErrorKind::InvalidOperation, msg.clone());
        self.recorded.lock().expect("render scope poisoned").error = Some((msg, hint));
        err
    }
}

#[derive(Debug)]
struct ScopeHandle(Arc<RenderScope>);
impl Object for ScopeHandle {}

fn scope(state: &State) -> Result<Arc<RenderScope>, Error> {
    state
        .lookup("__airlock_scope")
        .and_then(|v| v.downcast_object_ref::<ScopeHandle>().map(|h| h.0.clone()))
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "ref/source/config used outside a model"))
}

fn ref_fn(state: &State, first: String, second: Option<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let _ = kwargs.get::<Option<Value>>("version");
    let _ = kwargs.get::<Option<Value>>("v");
    let scope = scope(state)?;
    let (package, name) = match second {
        Some(name) => (Some(first), name),
        None => (None, first),
    };
    if let Some(pkg) = &package {
        if pkg != &scope.names.project {
            return Err(scope.fail(format!("ref('{pkg}', '{name}') names package '{pkg}'"), " (only the project's own models can be referenced)".into()));
        }
    }
    let Some(id) = scope.names.refs.get(&name) else {
        if let Some(path) = scope.names.disabled.get(&name) {
            return Err(scope.fail(format!("ref '{name}' points at a disabled model ({path})"), String::new()));
        }
        let hint = crate::suggest::hint(&name, scope.names.refs.keys().map(String::as_str));
        return Err(scope.fail(format!("unknown ref '{name}'"), hint));
    };
    let relation = (scope.place)(id);
    scope.recorded.lock().expect("poisoned").refs.push(id.clone());
    Ok(Value::from_object(relation))
}

fn source_fn(state: &State, source: String, table: String) -> Result<Value, Error> {
    let scope = scope(state)?;
    let key = (source.clone(), table.clone());
    let Some(id) = scope.names.sources.get(&key) else {
        let known: Vec<String> = scope.names.sources.keys().map(|(s, t)| format!("{s}.{t}")).collect();
        let hint = crate::suggest::hint(&format!("{source}.{table}"), known.iter().map(String::as_str));
        return Err(scope.fail(format!("unknown source '{source}.{table}'"), hint));
    };
    let relation = (scope.place)(id);
    scope.recorded.lock().expect("poisoned").sources.push(id.clone());
    Ok(Value::from_object(relation))
}

fn config_fn(state: &State, dict: Option<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let scope = scope(state)?;
    let mut items = Vec::new();
    // dbt also takes the config as one dict: `config({'materialized': 'table'})`
    if let Some(dict) = dict {
        let json = serde_json::to_value(&dict).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("config({{...}}): {e}")))?;
        let serde_json::Value::Object(map) = json else {
            return Err(Error::new(ErrorKind::InvalidOperation, format!("config() takes keyword arguments or one dict, got {dict}")));
        };
        items.extend(map);
    }
    for key in kwargs.args() {
        let value: Value = kwargs.get(key)?;
        let json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("config({key}=...): {e}")))?;
        items.push((key.to_string(), json));
    }
    scope.recorded.lock().expect("poisoned").config.extend(items);
    Ok(String::new())
}

fn is_incremental_fn(state: &State) -> Result<bool, Error> {
    Ok(scope(state)?.is_incremental)
}

fn env_var_fn(name: String, default: Option<Value>) -> Result<Value, Error> {
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => match default {
            Some(d) => Ok(d),
            None => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable '{name}' is not set and env_var() was given no default"),
            )),
        },
    }
}

/// Renders project templates. Built once per run; cheap to share.
pub struct Renderer {
    env: Environment<'static>,
    /// `{% from … import … %}` for every macro file, kept on one line so template
    /// line numbers stay the user's
    import_prefix: String,
    target: Value,
    /// whether templates of plain text and `ref`/`source` calls may skip
    /// minijinja (see [`Renderer::render_plain`])
    plain_ok: bool,
}

impl Renderer {
    pub fn new(macros: &[MacroFile], vars: BTreeMap<String, serde_json::Value>, target: serde_json::Value) -> Result<Self> {
        let mut env = base_env();
        add_var(&mut env, vars);
        env.add_function("ref", ref_fn);
        env.add_function("source", source_fn);
        env.add_function("config", config_fn);
        env.add_function("is_incremental", is_incremental_fn);
        env.add_function("log", |_msg: Value, _kw: Kwargs| -> Result<String, Error> { Ok(String::new()) });
        // dbt renders with `execute` true when it builds; so does airlock, at
        // load too: a `{% if execute %}` block is never skipped silently (what
        // it calls that airlock lacks, like run_query, is an error naming it)
        env.add_global("execute", Value::from(true));
        // printing a name that is not defined is an error, as in dbt (an
        // unknown name would otherwise render as nothing, silently); `{% if
        // x is defined %}` and `{% if x %}` still work
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        let now = chrono::Utc::now();
        env.add_global("run_started_at", Value::from(now.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()));
        env.add_global("invocation_id", Value::from(invocation_id(now)));
        add_cross_db(&mut env, &target);
        let mut import_prefix = String::new();
        let mut plain_ok = true;
        for file in macros {
            env.add_template_owned(file.name.clone(), file.source.clone())
                .map_err(|e| anyhow!("{}", describe(&e, &file.name)))?;
            if !file.macros.is_empty() {
                import_prefix.push_str(&format!("{{% from {:?} import {} %}}", file.name, file.macros.join(", ")));
            }
            // a macro named ref/source shadows ours; top-level code in a macro
            // file runs on every import: then every render goes through minijinja
            plain_ok &= !file.macros.iter().any(|m| m == "ref" || m == "source") && only_macro_definitions(&file.source);
        }
        Ok(Renderer { env, import_prefix, target: Value::from_serialize(&target), plain_ok })
    }

    /// Render `source` (from file `name`) in `scope`. Errors name the file and line.
    pub fn render(&self, name: &str, source: &str, scope: &Arc<RenderScope>) -> Result<String> {
        if let Some(out) = self.render_plain(source, scope) {
            return Ok(out);
        }
        self.render_jinja(name, source, scope)
    }

    /// The fast path, for the common model: text with `{{ ref('m') }}`,
    /// `{{ source('s', 't') }}` (names that resolve) and `{{ config(k=v) }}`
    /// (plain literals) and no other Jinja. Gives exactly what minijinja gives
    /// and records the same; None (minijinja renders it, and reports any
    /// error) for anything else.
    fn render_plain(&self, source: &str, scope: &RenderScope) -> Option<String> {
        if !self.plain_ok {
            return None;
        }
        let bytes = source.as_bytes();
        let mut out = String::with_capacity(source.len() + 64);
        let (mut refs, mut sources, mut config) = (Vec::new(), Vec::new(), Vec::new());
        let (mut copied, mut at) = (0, 0);
        while let Some(found) = source[at..].find('{') {
            let open = at + found;
            match bytes.get(open + 1) {
                Some(b'{') => {}
                Some(b'%' | b'#') => return None,
                _ => {
                    at = open + 1;
                    continue;
                }
            }
            let end = open + 2 + source[open + 2..].find("}}")?;
            let (func, args) = plain_call(&source[open + 2..end])?;
            out.push_str(&source[copied..open]);
            match (func, args.as_slice()) {
                ("ref", [PlainArg::Str(model)]) => {
                    let id = scope.names.refs.get(*model)?;
                    out.push_str(&(scope.place)(id).rendered);
                    refs.push(id.clone());
                }
                ("source", [PlainArg::Str(src), PlainArg::Str(table)]) => {
                    let id = scope.names.sources.get(&(src.to_string(), table.to_string()))?;
                    out.push_str(&(scope.place)(id).rendered);
                    sources.push(id.clone());
                }
                ("config", kwargs) => {
                    // minijinja hands keyword arguments over sorted by name
                    let mut items = Vec::with_capacity(kwargs.len());
                    for arg in kwargs {
                        let PlainArg::Kw(key, value) = arg else { return None };
                        items.push((key.to_string(), value.clone()));
                    }
                    items.sort_by(|a, b| a.0.cmp(&b.0));
                    if items.windows(2).any(|w| w[0].0 == w[1].0) {
                        return None;
                    }
                    config.extend(items);
                }
                _ => return None,
            }
            copied = end + 2;
            at = copied;
        }
        out.push_str(&source[copied..]);
        let mut recorded = scope.recorded.lock().expect("render scope poisoned");
        recorded.refs.extend(refs);
        recorded.sources.extend(sources);
        recorded.config.extend(config);
        Some(out)
    }

    fn render_jinja(&self, name: &str, source: &str, scope: &Arc<RenderScope>) -> Result<String> {
        let this = scope.this.clone().map(Value::from_object).unwrap_or(Value::UNDEFINED);
        let target = scope.target.as_ref().map(Value::from_serialize).unwrap_or_else(|| self.target.clone());
        let ctx = minijinja::context! {
            this => this,
            target => target,
            __airlock_scope => Value::from_object(ScopeHandle(scope.clone())),
        };
        let full = format!("{}{}", self.import_prefix, source);
        self.env.render_named_str(name, &full, ctx).map_err(|e| {
            let recorded = scope.recorded.lock().expect("poisoned").error.take();
            match recorded {
                Some((msg, hint)) => anyhow!("{msg} in {}{hint}", location(&e, name)),
                None => anyhow!("{}", describe(&e, name)),
            }
        })
    }
}

/// An argument of a call the fast path renders.
#[derive(Debug)]
enum PlainArg<'a> {
    /// a string literal
    Str(&'a str),
    /// `key=literal`: a string, an integer, true/false or none
    Kw(&'a str, serde_json::Value),
}

/// `ref('m')`, `source("s", 't')`, `config(materialized='table', x=1)`: a
/// function name and literal arguments (no escapes, no whitespace control,
/// no expressions), else None.
fn plain_call(expr: &str) -> Option<(&str, Vec<PlainArg<'_>>)> {
    if expr.starts_with(['-', '+']) || expr.ends_with(['-', '+']) {
        return None;
    }
    let expr = expr.trim();
    let open = expr.find('(')?;
    let func = expr[..open].trim_end();
    if !is_ident(func) {
        return None;
    }
    let mut rest = expr[open + 1..].strip_suffix(')')?.trim();
    let mut args = Vec::new();
    while !rest.is_empty() {
        let key_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let keyword = (key_len > 0).then(|| (&rest[..key_len], rest[key_len..].trim_start())).filter(|(k, r)| is_ident(k) && r.starts_with('=') && !r.starts_with("=="));
        let arg;
        (arg, rest) = match keyword {
            Some((key, after)) => {
                let (value, after) = plain_literal(after[1..].trim_start())?;
                (PlainArg::Kw(key, value), after)
            }
            None => {
                let (text, after) = plain_string(rest)?;
                (PlainArg::Str(text), after)
            }
        };
        args.push(arg);
        rest = rest.trim_start();
        if let Some(more) = rest.strip_prefix(',') {
            rest = more.trim_start();
            if rest.is_empty() {
                return None;
            }
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some((func, args))
}

fn is_ident(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A quoted string without escapes at the start of `s`, and what follows it.
fn plain_string(s: &str) -> Option<(&str, &str)> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let close = s[1..].find(quote)? + 1;
    let text = &s[1..close];
    (!text.contains('\\')).then_some((text, &s[close + 1..]))
}

/// A literal as minijinja reads it, as JSON: a string, an integer,
/// true/false/none (either case); and what follows it.
fn plain_literal(s: &str) -> Option<(serde_json::Value, &str)> {
    if let Some((text, rest)) = plain_string(s) {
        return Some((serde_json::Value::String(text.to_string()), rest));
    }
    let len = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(s.len());
    let (word, rest) = s.split_at(len);
    let value = match word {
        "true" | "True" => serde_json::Value::Bool(true),
        "false" | "False" => serde_json::Value::Bool(false),
        "none" | "None" => serde_json::Value::Null,
        _ if word.bytes().all(|b| b.is_ascii_digit()) && !word.is_empty() && (word == "0" || !word.starts_with('0')) => serde_json::Value::from(word.parse::<i64>().ok()?),
        _ => return None,
    };
    Some((value, rest))
}

/// Whether a macro file holds only macro definitions (and whitespace and
/// comments) at its top level, so importing it has no effect but the names.
fn only_macro_definitions(source: &str) -> bool {
    let mut depth = 0usize;
    let mut rest = source;
    loop {
        let next = [rest.find("{%"), rest.find("{{"), rest.find("{#")].into_iter().flatten().min();
        let Some(at) = next else { return depth > 0 || rest.trim().is_empty() };
        if depth == 0 && !rest[..at].trim().is_empty() {
            return false;
        }
        let tag = &rest[at..at + 2];
        let close = match tag {
            "{%" => "%}",
            "{{" => "}}",
            _ => "#}",
        };
        let Some(end) = rest[at + 2..].find(close) else { return false };
        let inner = rest[at + 2..at + 2 + end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        match tag {
            "{%" => match inner.split_whitespace().next().unwrap_or("") {
                "macro" => depth += 1,
                "endmacro" if depth > 0 => depth -= 1,
                _ if depth == 0 => return false,
                _ => {}
            },
            "{{" if depth == 0 => return false,
            _ => {}
        }
        rest = &rest[at + 2 + end + 2..];
    }
}

/// The template that calls a custom generic test: `{% test name(model,
/// column_name, ...) %}` is the macro `test_name`; `model` is the render's
/// `this` (the tested relation, filtered by `where`), the arguments are
/// literals, except `ref(...)` / `source(...)` strings, which dbt evaluates.
pub fn test_macro_call(name: &str, column: Option<&str>, args: &BTreeMap<String, serde_json::Value>) -> Result<String> {
    let mut call = format!("{{{{ test_{name}(model=this");
    if let Some(c) = column.filter(|c| !c.is_empty()) {
        call.push_str(&format!(", column_name={}", jinja_literal(&serde_json::Value::String(c.to_string()))));
    }
    for (k, v) in args {
        if k == "column_name" || k == "to_node" || k == "model" {
            continue;
        }
        if !is_ident(k) {
            return Err(anyhow!("test '{name}': argument name '{k}' is not a valid identifier"));
        }
        call.push_str(&format!(", {k}={}", jinja_literal(v)));
    }
    call.push_str(") }}");
    Ok(call)
}

/// A JSON value as a Jinja expression.
fn jinja_literal(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Null => "none".into(),
        J::Bool(b) => b.to_string(),
        J::Number(n) => n.to_string(),
        J::String(s) => {
            let t = s.trim();
            if (t.starts_with("ref(") || t.starts_with("source(")) && t.ends_with(')') {
                return t.to_string();
            }
            let escaped = s.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n").replace('\r', "\\r");
            format!("'{escaped}'")
        }
        J::Array(items) => format!("[{}]", items.iter().map(jinja_literal).collect::<Vec<_>>().join(", ")),
        J::Object(map) => format!("{{{}}}", map.iter().map(|(k, v)| format!("{}: {}", jinja_literal(&J::String(k.clone())), jinja_literal(v))).collect::<Vec<_>>().join(", ")),
    }
}

/// dbt's cross-database macros (`dbt.concat`, `type_string`, `dateadd`, …)
/// as dbt-duckdb 1.11 renders them, both as `dbt.name(...)` and as global
/// functions; for another warehouse each is an error pointing at
/// `--builder dbt` (its SQL differs there, and a guess would build something
/// dbt would not).
fn add_cross_db(env: &mut Environment<'static>, target: &serde_json::Value) {
    let warehouse = target.get("type").and_then(|t| t.as_str()).unwrap_or("duckdb").to_ascii_lowercase();
    let ns = Arc::new(CrossDb { warehouse });
    for name in CROSS_DB {
        let ns = ns.clone();
        env.add_function(*name, move |args: minijinja::value::Rest<Value>| -> Result<Value, Error> { ns.render_macro(name, &args) });
    }
    env.add_global("dbt", Value::from_dyn_object(ns.clone()));
    env.add_global("adapter", Value::from_object(Adapter { warehouse: ns.warehouse.clone() }));
    env.add_global("exceptions", Value::from_object(Exceptions));
}

/// The part of dbt's `adapter` that needs no warehouse round trip; every
/// other method (`dispatch`, `get_relation`, …) is an error naming it.
#[derive(Debug)]
struct Adapter {
    warehouse: String,
}

impl Object for Adapter {
    fn call_method(self: &Arc<Self>, _state: &State, method: &str, args: &[Value]) -> Result<Value, Error> {
        match (method, args) {
            ("quote", [name]) => {
                let name = name.to_string();
                Ok(Value::from(if self.warehouse == "bigquery" { format!("`{name}`") } else { format!("\"{}\"", name.replace('"', "\"\"")) }))
            }
            _ => Err(Error::new(ErrorKind::UnknownMethod, format!("adapter.{method}() is not available in the native builder yet"))),
        }
    }
}

/// dbt's `exceptions`: `raise_compiler_error` fails the render with the
/// message, `warn` prints it.
#[derive(Debug)]
struct Exceptions;

impl Object for Exceptions {
    fn call_method(self: &Arc<Self>, _state: &State, method: &str, args: &[Value]) -> Result<Value, Error> {
        let msg = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "raise_compiler_error" => Err(Error::new(ErrorKind::InvalidOperation, format!("compilation error: {msg}"))),
            "warn" => {
                eprintln!("airlock: warning: {msg}");
                Ok(Value::from(""))
            }
            _ => Err(Error::new(ErrorKind::UnknownMethod, format!("exceptions.{method}() is not available in the native builder yet"))),
        }
    }
}

const CROSS_DB: &[&str] = &[
    "type_string", "type_int", "type_bigint", "type_float", "type_numeric", "type_timestamp", "type_boolean", "concat", "hash", "safe_cast",
    "cast", "dateadd", "datediff", "date_trunc", "last_day", "split_part", "length", "right", "replace", "position", "any_value", "bool_or",
    "listagg", "string_literal", "escape_single_quotes", "current_timestamp", "date", "except", "intersect", "cast_bool_to_text",
    "array_construct", "array_append", "array_concat", "equals",
];

/// dbt's `invocation_id`: a version-4-shaped UUID, unique per run (from the
/// clock and the process id; nothing depends on its randomness).
fn invocation_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let nanos = now.timestamp_nanos_opt().unwrap_or_default() as u64;
    let pid = std::process::id() as u64;
    let mix = nanos.rotate_left(17) ^ pid.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", (nanos >> 32) as u32, (nanos >> 16) as u16, pid & 0xfff, mix & 0xfff, mix >> 16 & 0xffff_ffff_ffff)
}

/// The `dbt` namespace of cross-database macros.
#[derive(Debug)]
struct CrossDb {
    warehouse: String,
}

impl Object for CrossDb {
    fn call_method(self: &Arc<Self>, _state: &State, method: &str, args: &[Value]) -> Result<Value, Error> {
        if !CROSS_DB.contains(&method) {
            return Err(Error::new(ErrorKind::UnknownMethod, format!("dbt.{method} is not one of dbt's cross-database macros the native builder renders")));
        }
        self.render_macro(method, args)
    }
}

impl CrossDb {
    fn render_macro(&self, name: &str, args: &[Value]) -> Result<Value, Error> {
        if self.warehouse != "duckdb" {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("dbt.{name}() is rendered natively as dbt-duckdb renders it, not for {}; run the project with --builder dbt", self.warehouse),
            ));
        }
        // positional arguments, then keyword arguments by dbt's parameter names
        let (pos, kwargs): (&[Value], Option<Kwargs>) = match args.split_last() {
            Some((last, rest)) if last.is_kwargs() => (rest, Some(Kwargs::try_from(last.clone())?)),
            _ => (args, None),
        };
        let params: &[&str] = match name {
            "concat" => &["fields"],
            "hash" | "length" | "any_value" | "bool_or" | "escape_single_quotes" | "cast_bool_to_text" => &["field"],
            "safe_cast" | "cast" => &["field", "type"],
            "dateadd" => &["datepart", "interval", "from_date_or_timestamp"],
            "datediff" => &["first_date", "second_date", "datepart"],
            "date_trunc" => &["datepart", "date"],
            "last_day" => &["date", "datepart"],
            "split_part" => &["string_text", "delimiter_text", "part_number"],
            "right" => &["string_text", "length_expression"],
            "replace" => &["field", "old_chars", "new_chars"],
            "position" => &["substring_text", "string_text"],
            "listagg" => &["measure", "delimiter_text", "order_by_clause", "limit_num"],
            "string_literal" => &["value"],
            "date" => &["year", "month", "day"],
            "array_construct" => &["inputs", "data_type"],
            "array_append" => &["array", "new_element"],
            "array_concat" => &["array_1", "array_2"],
            "equals" => &["expr1", "expr2"],
            _ => &[],
        };
        let get = |i: usize| -> Option<Value> {
            pos.get(i).cloned().or_else(|| {
                let key = params.get(i)?;
                kwargs.as_ref().and_then(|k| k.get::<Option<Value>>(key).ok().flatten())
            })
            .filter(|v| !v.is_none() && !v.is_undefined())
        };
        let text = |i: usize| -> Result<String, Error> {
            get(i).map(|v| v.to_string()).ok_or_else(|| Error::new(ErrorKind::MissingArgument, format!("dbt.{name}() needs '{}'", params.get(i).unwrap_or(&"?"))))
        };
        let list = |i: usize| -> Result<Vec<String>, Error> {
            let v = get(i).ok_or_else(|| Error::new(ErrorKind::MissingArgument, format!("dbt.{name}() needs a list")))?;
            Ok(v.try_iter()?.map(|x| x.to_string()).collect())
        };
        let sql = match name {
            "type_string" => "TEXT".to_string(),
            "type_int" => "integer".to_string(),
            "type_bigint" => "bigint".to_string(),
            "type_float" => "float".to_string(),
            "type_numeric" => "numeric(28,6)".to_string(),
            "type_timestamp" => "timestamp".to_string(),
            "type_boolean" => "boolean".to_string(),
            "concat" => list(0)?.join(" || "),
            "hash" => format!("md5(cast({} as TEXT))", text(0)?),
            // dbt-duckdb's safe_cast is a plain cast
            "safe_cast" | "cast" => format!("cast({} as {})", text(0)?, text(1)?),
            "dateadd" => format!("({} + cast({} as bigint) * interval 1 {})", text(2)?, text(1)?, text(0)?),
            "datediff" => format!("(date_diff('{}', {}::timestamp, {}::timestamp ))", text(2)?, text(0)?, text(1)?),
            "date_trunc" => format!("date_trunc('{}', {})", text(0)?, text(1)?),
            "last_day" => {
                let (d, part) = (text(0)?, text(1)?);
                format!("cast(((date_trunc('{part}', {d}) + cast(1 as bigint) * interval 1 {part}) + cast(-1 as bigint) * interval 1 day) as date)")
            }
            "split_part" => format!("string_split({}, {})[ {} ]", text(0)?, text(1)?, text(2)?),
            "length" => format!("length({})", text(0)?),
            "right" => format!("right({}, {})", text(0)?, text(1)?),
            "replace" => format!("replace({}, {}, {})", text(0)?, text(1)?, text(2)?),
            "position" => format!("position({} in {})", text(0)?, text(1)?),
            "any_value" => format!("arbitrary({})", text(0)?),
            "bool_or" => format!("bool_or({})", text(0)?),
            "listagg" => {
                let measure = text(0)?;
                let delim = get(1).map(|v| v.to_string()).unwrap_or_else(|| "','".to_string());
                let order = get(2).map(|v| v.to_string()).unwrap_or_default();
                match get(3) {
                    Some(limit) => format!("list_aggr((array_agg({measure} {order}))[1:{limit}], 'string_agg', {delim})"),
                    None => format!("string_agg({measure}, {delim} {order})"),
                }
            }
            "string_literal" => format!("'{}'", text(0)?),
            "escape_single_quotes" => text(0)?.replace('\'', "''"),
            "current_timestamp" => "now()".to_string(),
            "date" => format!("make_date({}, {}, {})", text(0)?, text(1)?, text(2)?),
            "except" => "except".to_string(),
            "intersect" => "intersect".to_string(),
            "cast_bool_to_text" => format!("cast({} as TEXT)", text(0)?),
            "array_construct" => format!("array[ {} ]", get(0).map(|_| list(0)).transpose()?.unwrap_or_default().join(" , ")),
            "array_append" => format!("array_append({}, {})", text(0)?, text(1)?),
            "array_concat" => format!("array_cat({}, {})", text(0)?, text(1)?),
            "equals" => format!("({} = {})", text(0)?, text(1)?),
            other => return Err(Error::new(ErrorKind::UnknownMethod, format!("dbt.{other}"))),
        };
        if let Some(k) = kwargs {
            k.assert_all_used()?;
        }
        Ok(Value::from(sql))
    }
}

fn add_var(env: &mut Environment<'static>, vars: BTreeMap<String, serde_json::Value>) {
    let vars = Arc::new(vars);
    env.add_function("var", move |name: String, default: Option<Value>| -> Result<Value, Error> {
        match vars.get(&name) {
            Some(v) => Ok(Value::from_serialize(v)),
            None => default.ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, format!("var '{name}' is not defined in dbt_project.yml or --vars and has no default"))
            }),
        }
    });
}

/// Renders the Jinja in configuration values (`dbt_project.yml`, YAML
/// properties) as dbt does: `var`, `env_var` and `target` are known, and the
/// result is read back natively (`"{{ var('on', false) }}"` is the boolean
/// false, not the string). Hooks are left alone: they render at run time.
pub struct ValueRenderer {
    env: Environment<'static>,
    target: Value,
}

/// Config keys whose values are SQL rendered when they run, not at load.
pub const RUNTIME_KEYS: &[&str] = &["pre-hook", "post-hook", "pre_hook", "post_hook", "+pre-hook", "+post-hook", "+pre_hook", "+post_hook", "on-run-start", "on-run-end"];

impl ValueRenderer {
    pub fn new(vars: BTreeMap<String, serde_json::Value>, target: serde_json::Value) -> Self {
        let mut env = base_env();
        add_var(&mut env, vars);
        ValueRenderer { env, target: Value::from_serialize(&target) }
    }

    /// Every string in `value` rendered, except under hook keys.
    pub fn tree(&self, value: &serde_json::Value, origin: &str) -> Result<serde_json::Value> {
        use serde_json::Value as J;
        Ok(match value {
            J::String(s) => self.string(s, origin)?,
            J::Array(items) => J::Array(items.iter().map(|v| self.tree(v, origin)).collect::<Result<_>>()?),
            J::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    let rendered = if RUNTIME_KEYS.contains(&k.as_str()) { v.clone() } else { self.tree(v, origin)? };
                    out.insert(k.clone(), rendered);
                }
                J::Object(out)
            }
            other => other.clone(),
        })
    }

    /// One value: untouched without Jinja, else rendered and read natively.
    pub fn string(&self, text: &str, origin: &str) -> Result<serde_json::Value> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(serde_json::Value::String(text.to_string()));
        }
        let out = self
            .env
            .render_named_str(origin, text, minijinja::context! { target => self.target.clone() })
            .map_err(|e| anyhow!("{} (in the value \"{text}\")", describe(&e, origin)))?;
        Ok(native(&out))
    }
}

/// dbt's native rendering: a rendered value that reads as a literal is one.
fn native(text: &str) -> serde_json::Value {
    let t = text.trim();
    match t {
        "True" | "true" => return serde_json::Value::Bool(true),
        "False" | "false" => return serde_json::Value::Bool(false),
        "None" | "none" => return serde_json::Value::Null,
        _ => {}
    }
    if let Ok(n) = t.parse::<i64>() {
        return serde_json::Value::from(n);
    }
    if let Ok(x) = t.parse::<f64>() {
        if x.is_finite() && t.contains('.') {
            return serde_json::Value::from(x);
        }
    }
    serde_json::Value::String(text.to_string())
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.add_function("env_var", env_var_fn);
    env
}

fn location(e: &Error, fallback: &str) -> String {
    let name = e.name().unwrap_or(fallback);
    match e.line() {
        Some(line) => format!("{name}:{line}"),
        None => name.to_string(),
    }
}

/// `models/x.sql:3: syntax error: unexpected end of input …`
fn describe(e: &Error, fallback: &str) -> String {
    let kind = match e.kind() {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::TemplateNotFound => "template not found",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::TooManyArguments => "too many arguments",
        ErrorKind::InvalidOperation => "error",
        _ => "template error",
    };
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    let mut msg = format!("{}: {kind}{detail}", location(e, fallback));
    if matches!(e.kind(), ErrorKind::UnknownFunction | ErrorKind::UndefinedError | ErrorKind::UnknownMethod) {
        msg.push_str(" (dbt Jinja the native builder does not have yet, such as packages, adapter or run_query, runs with --builder dbt)");
    }
    // an error inside a macro names the macro file; say where it was called from too
    if let Some(src) = std::error::Error::source(e) {
        msg.push_str(&format!(" ({src})"));
    }
    msg
}

/// Render a configuration file's text (profiles.yml): only `env_var` is known.
pub fn render_config_text(text: &str, name: &str) -> Result<String> {
    let env = base_env();
    env.render_named_str(name, text, ()).map_err(|e| anyhow!("{}", describe(&e, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_db_macros_render_as_dbt_duckdb_and_refuse_elsewhere() {
        let duck = Renderer::new(&[], BTreeMap::new(), serde_json::json!({"type": "duckdb"})).unwrap();
        let out = duck.render("m.sql", "{{ dbt.concat(['a', \"'x'\"]) }}|{{ type_string() }}|{{ dbt.dateadd(datepart='day', interval=3, from_date_or_timestamp='d') }}|{{ config({'alias': 'z'}) }}", &scope()).unwrap();
        assert_eq!(out, "a || 'x'|TEXT|(d + cast(3 as bigint) * interval 1 day)|");
        let snow = Renderer::new(&[], BTreeMap::new(), serde_json::json!({"type": "snowflake"})).unwrap();
        let err = snow.render("m.sql", "{{ dbt.hash('a') }}", &scope()).unwrap_err().to_string();
        assert!(err.contains("m.sql:1") && err.contains("not for snowflake") && err.contains("--builder dbt"), "{err}");
    }

    #[test]
    fn adapter_quote_and_exceptions_work_and_other_adapter_methods_are_errors() {
        let duck = Renderer::new(&[], BTreeMap::new(), serde_json::json!({"type": "duckdb"})).unwrap();
        assert_eq!(duck.render("m.sql", "{{ adapter.quote('Order id') }}", &scope()).unwrap(), "\"Order id\"");
        let err = duck.render("m.sql", "\n{{ adapter.get_relation(database='d', schema='s', identifier='t') }}", &scope()).unwrap_err().to_string();
        assert!(err.contains("m.sql:2") && err.contains("adapter.get_relation") && err.contains("--builder dbt"), "{err}");
        let err = duck.render("m.sql", "{% if 1 > 0 %}{{ exceptions.raise_compiler_error('orders must be unique') }}{% endif %}", &scope()).unwrap_err().to_string();
        assert!(err.contains("orders must be unique"), "{err}");
        let err = duck.render("m.sql", "{% if execute %}{% set r = run_query('select 1') %}{% endif %}", &scope()).unwrap_err().to_string();
        assert!(err.contains("run_query") && err.contains("--builder dbt"), "{err}");
        // a name nothing defines is an error when printed, not an empty string
        let err = duck.render("m.sql", "select '{{ loaded_at }}' as x", &scope()).unwrap_err().to_string();
        assert!(err.contains("m.sql:1") && err.contains("undefined"), "{err}");
        assert_eq!(duck.render("m.sql", "{% if loaded_at is defined %}a{% else %}b{% endif %}{% if nope %}c{% endif %}", &scope()).unwrap(), "b");
        assert!(duck.render("m.sql", "{{ run_started_at }}", &scope()).unwrap().ends_with("+00:00"));
    }

    #[test]
    fn config_takes_one_dict_as_dbt_does() {
        let r = Renderer::new(&[], BTreeMap::new(), serde_json::json!({})).unwrap();
        let sc = scope();
        r.render("m.sql", "{{ config({'materialized': 'table', 'tags': ['a']}) }}", &sc).unwrap();
        let cfg = sc.take().config;
        assert!(cfg.contains(&("materialized".to_string(), serde_json::json!("table"))), "{cfg:?}");
        assert!(cfg.contains(&("tags".to_string(), serde_json::json!(["a"]))), "{cfg:?}");
    }

    fn scope() -> Arc<RenderScope> {
        let refs = HashMap::from([("orders".to_string(), "model.p.orders".to_string())]);
        let sources = HashMap::from([(("raw".to_string(), "pay".to_string()), "source.p.raw.pay".to_string())]);
        let names = Arc::new(Names { project: "p".into(), refs, sources, disabled: HashMap::new() });
        let place: Placement = Arc::new(|id: &str| Relation { database: None, schema: "s".into(), identifier: id.into(), rendered: format!("\"s\".\"{id}\"") });
        RenderScope::new(names, place, None, false)
    }

    #[test]
    fn plain_path_renders_and_records_as_minijinja_does() {
        let r = Renderer::new(&[], BTreeMap::new(), serde_json::json!({})).unwrap();
        for src in [
            "select 1\n",
            "select * from {{ ref('orders') }}\njoin {{source( \"raw\" , 'pay' )}} on 1 = 1\n\n",
            "{{ref('orders')}}{{ ref(\"orders\") }}",
            "x }} y {{ ref('orders') }} { not jinja }",
            "{{ config(materialized='incremental', unique_key = \"id\") }}\nselect 1 from {{ ref('orders') }}",
            "{{ config(enabled=false, full_refresh=True, n=12, z=none, alias='a') }}{{ config() }}",
        ] {
            let (a, b) = (scope(), scope());
            let fast = r.render_plain(src, &a).unwrap_or_else(|| panic!("not plain: {src}"));
            assert_eq!(fast, r.render_jinja("t.sql", src, &b).unwrap(), "{src}");
            let (ra, rb) = (a.take(), b.take());
            assert_eq!((ra.refs, ra.sources, ra.config), (rb.refs, rb.sources, rb.config), "{src}");
        }
        // anything else goes to minijinja, which also reports the errors
        for src in [
            "{{ ref('nope') }}",
            "{{- ref('orders') }}",
            "{{ ref('orders') -}}",
            "{{ ref('orders').schema }}",
            "{% if true %}{{ ref('orders') }}{% endif %}",
            "{# c #}{{ ref('orders') }}",
            "{{ ref('a\\'b') }}",
            "{{ ref('orders', ) }}",
            "{{ ref('p', 'orders') }}",
            "{{ ref('orders') }",
            "{{ config(tags=['a']) }}",
            "{{ config(materialized=var('m')) }}",
            "{{ config(n=1.5) }}",
            "{{ config(n=-1) }}",
            "{{ config(n=01) }}",
            "{{ config(a=1, a=2) }}",
            "{{ config('table') }}",
            "{{ ref(m='orders') }}",
            "{{ ref(orders) }}",
        ] {
            assert!(r.render_plain(src, &scope()).is_none(), "{src}");
        }
    }

    #[test]
    fn macro_files_with_top_level_code_or_a_ref_macro_turn_the_plain_path_off() {
        assert!(only_macro_definitions("{# c #}\n{% macro a(x) %}{{ x }}{% if x %}y{% endif %}{% endmacro %}\n\n{%- macro b() -%}z{%- endmacro -%}\n"));
        assert!(!only_macro_definitions("{% macro a() %}1{% endmacro %}\nselect {{ ref('x') }}"));
        assert!(!only_macro_definitions("{% set x = ref('y') %}{% macro a() %}1{% endmacro %}"));
        assert!(!only_macro_definitions("{% macro a() %}1{% endmacro %} stray text"));
        let file = |source: &str, macros: &[&str]| MacroFile { name: "macros/m.sql".into(), source: source.into(), macros: macros.iter().map(|m| m.to_string()).collect() };
        let plain = |files: &[MacroFile]| Renderer::new(files, BTreeMap::new(), serde_json::json!({})).unwrap().render_plain("{{ ref('orders') }}", &scope()).is_some();
        assert!(plain(&[file("{% macro cents(c) %}{{ c }} / 100{% endmacro %}", &["cents"])]));
        assert!(!plain(&[file("{% macro ref(m) %}x{% endmacro %}", &["ref"])]));
        assert!(!plain(&[file("{% set x = 1 %}{% macro cents(c) %}{{ c }}{% endmacro %}", &["cents"])]));
    }
}
