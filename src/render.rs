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

fn config_fn(state: &State, kwargs: Kwargs) -> Result<String, Error> {
    let scope = scope(state)?;
    let mut items = Vec::new();
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
        let mut import_prefix = String::new();
        for file in macros {
            env.add_template_owned(file.name.clone(), file.source.clone())
                .map_err(|e| anyhow!("{}", describe(&e, &file.name)))?;
            if !file.macros.is_empty() {
                import_prefix.push_str(&format!("{{% from {:?} import {} %}}", file.name, file.macros.join(", ")));
            }
        }
        Ok(Renderer { env, import_prefix, target: Value::from_serialize(&target) })
    }

    /// Render `source` (from file `name`) in `scope`. Errors name the file and line.
    pub fn render(&self, name: &str, source: &str, scope: &Arc<RenderScope>) -> Result<String> {
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
