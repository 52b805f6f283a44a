//! Reading a project directory into a [`Project`]: files are found, YAML is
//! parsed, every model and singular test is rendered once to discover its refs,
//! sources and `config()` calls, and configs are merged in dbt's precedence
//! (dbt_project.yml < YAML properties < `config()` in SQL).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::dbt_project::{self, apply_config, apply_tree, DbtProjectFile};
use super::properties::{self, ColumnProps, TestDecl, TestLists};
use super::refuse::{self, Refusals};
use super::{MacroFile, Materialization, Node, NodeConfig, NodeId, NodeKind, Project, TestKind};
use crate::render::{Names, Relation, RenderScope, Renderer};

/// `dbt_project.yml`, read first: the profile it names decides the target.
pub struct ProjectHeader {
    pub root: PathBuf,
    pub name: String,
    pub profile: String,
    file: DbtProjectFile,
}

pub fn read_header(root: &Path) -> Result<ProjectHeader> {
    let file = dbt_project::read(root)?;
    let profile = file.profile.clone().unwrap_or_else(|| file.name.clone());
    Ok(ProjectHeader { root: root.to_path_buf(), name: file.name.clone(), profile, file })
}

/// A loaded project with the renderer and name table its SQL is rendered with.
pub struct Loaded {
    pub project: Project,
    pub renderer: Renderer,
    pub names: Arc<Names>,
}

/// The nodes while a project loads: in id order, each boxed (a node is
/// several hundred bytes; the tree and the results built across cores
/// then move pointers, not nodes). The loaded project holds them unboxed.
type LoadNodes = BTreeMap<NodeId, Box<Node>>;

pub fn load_project(header: ProjectHeader, target: Value, cli_vars: BTreeMap<String, Value>) -> Result<Loaded> {
    let ProjectHeader { root, name, profile, mut file } = header;
    let paths = |given: &Option<Vec<String>>, default: &str| -> Vec<String> {
        given.clone().unwrap_or_else(|| vec![default.to_string()])
    };
    let model_dirs = paths(&file.model_paths, "models");
    let seed_dirs = paths(&file.seed_paths, "seeds");
    let test_dirs = paths(&file.test_paths, "tests");
    let macro_dirs = paths(&file.macro_paths, "macros");
    let snapshot_dirs = paths(&file.snapshot_paths, "snapshots");
    let function_dirs = paths(&file.function_paths, "functions");
    let mut refusals = Refusals::default();

    let mut vars = file.project_vars();
    vars.extend(cli_vars);
    // Jinja in config values renders at load, as dbt renders it
    let values = crate::render::ValueRenderer::new(vars.clone(), target.clone());
    file.models = values.tree(&file.models, "dbt_project.yml")?;
    file.seeds = values.tree(&file.seeds, "dbt_project.yml")?;
    file.tests = values.tree(&file.tests, "dbt_project.yml")?;
    let on_run_start = dbt_project::run_hooks(&file.on_run_start, "on-run-start")?;
    let quoting = file.quoting;
    let on_run_end = dbt_project::run_hooks(&file.on_run_end, "on-run-end")?;

    let mut nodes = LoadNodes::new();
    let mut by_name: HashMap<String, NodeId> = HashMap::new();
    let mut disabled: HashMap<String, String> = HashMap::new();

    let mut listing = Listing::new(&root);
    refuse_files(&root, &file, &model_dirs, &snapshot_dirs, &function_dirs, &mut listing, &mut refusals)?;
    // models: files read and configured in parallel, inserted in file order
    let mut model_files = Vec::new();
    for dir in &model_dirs {
        model_files.extend(listing.files(dir, "sql")?.into_iter().map(|path| (dir, path)));
    }
    crate::phase::mark("load: files listed");
    let read_models = crate::par::map(&model_files, |(dir, path)| -> Result<_> {
        let rel = rel_path(&root, path);
        let raw_sql = std::fs::read_to_string(path).with_context(|| format!("cannot read {rel}"))?;
        let fqn = fqn_of(&name, dir, &root, path);
        let mut config = NodeConfig::default();
        apply_tree(&file.models, &fqn, &mut config, "dbt_project.yml")?;
        Ok((rel, file_stem(path), raw_sql, fqn, config))
    });
    for read in read_models {
        let (rel, stem, raw_sql, fqn, config) = read?;
        let id = format!("model.{name}.{stem}");
        let node = Node {
            id: id.clone(),
            kind: NodeKind::Model,
            name: stem.clone(),
            path: PathBuf::from(&rel),
            fqn,
            config,
            raw_sql,
            depends_on: BTreeSet::new(),
            materialization: Materialization::View,
            attached_to: None,
            test: None,
            source_relation: None,
            seed_file: None,
        };
        insert_unique(&mut nodes, &mut by_name, node)?;
    }

    crate::phase::mark("load: model files read");
    // seeds
    for dir in &seed_dirs {
        for path in listing.files(dir, "csv")? {
            let rel = rel_path(&root, &path);
            check_csv(&path, &rel)?;
            let stem = file_stem(&path);
            let fqn = fqn_of(&name, dir, &root, &path);
            let mut config = NodeConfig::default();
            apply_tree(&file.seeds, &fqn, &mut config, "dbt_project.yml")?;
            let node = Node {
                id: format!("seed.{name}.{stem}"),
                kind: NodeKind::Seed,
                name: stem,
                path: PathBuf::from(&rel),
                fqn,
                config,
                raw_sql: String::new(),
                depends_on: BTreeSet::new(),
                materialization: Materialization::Seed,
                attached_to: None,
                test: None,
                source_relation: None,
                seed_file: Some(path.clone()),
            };
            insert_unique(&mut nodes, &mut by_name, node)?;
        }
    }

    // YAML properties: sources, model/seed properties, generic tests
    let mut decls: Vec<(NodeId, TestDecl, String)> = Vec::new();
    let mut sources: HashMap<(String, String), NodeId> = HashMap::new();
    let mut yaml_files = Vec::new();
    for dir in model_dirs.iter().chain(seed_dirs.iter()) {
        let mut files = listing.files(dir, "yml")?;
        files.extend(listing.files(dir, "yaml")?);
        files.sort();
        yaml_files.extend(files);
    }
    // parsed in parallel, applied in order
    let parsed = crate::par::map_each(&yaml_files, |path| {
        let rel = rel_path(&root, path);
        let props = properties::read(path, &rel);
        (rel, props)
    });
    crate::phase::mark("load: YAML parsed");
    for (rel, props) in parsed {
        let props = props?;
        if !props.snapshots.is_empty() {
            refusals.add(&rel, "snapshot (snapshots:)");
        }
        if !props.unit_tests.is_empty() {
            refusals.add(&rel, "unit test (unit_tests:)");
        }
        if !props.functions.is_empty() {
            refusals.add(&rel, "function / UDF (functions:)");
        }
        for src in props.sources {
            // Snowflake reads a source in another database by its three-part
            // name; elsewhere that is not built yet
            let mut source_database = None;
            if let Some(db) = src.database.as_deref() {
                let db = match values.string(db, &rel)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let target_db = target.get("database").and_then(Value::as_str).unwrap_or_default();
                let snowflake = target.get("type").and_then(Value::as_str) == Some("snowflake");
                match (db.eq_ignore_ascii_case(target_db), snowflake) {
                    (true, _) => {}
                    (false, true) => source_database = Some(db),
                    (false, false) => refusals.add(&rel, format!("source '{}' in database '{db}' (another database than the target's)", src.name)),
                }
            }
            for table in src.tables {
                let id = format!("source.{name}.{}.{}", src.name, table.name);
                let mut config = NodeConfig::default();
                apply_config(&mut config, "meta", &src.meta, &rel)?;
                apply_config(&mut config, "meta", &src.config.get("meta").cloned().unwrap_or(Value::Null), &rel)?;
                if let Some(loc) = src.config.get("external_location") {
                    apply_config(&mut config, "external_location", loc, &rel)?;
                }
                apply_config(&mut config, "meta", &table.meta, &rel)?;
                if let Some(loc) = table.config.get("external_location") {
                    apply_config(&mut config, "external_location", loc, &rel)?;
                }
                // Jinja in a source's identifier renders as dbt renders it
                let identifier = match &table.identifier {
                    Some(text) => match values.string(text, &rel)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    None => table.name.clone(),
                };
                if let Some(loc) = &mut config.external_location {
                    *loc = loc.replace("{name}", &table.name).replace("{identifier}", &identifier);
                }
                let schema = match &src.schema {
                    Some(text) => match values.string(text, &rel)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    None => src.name.clone(),
                };
                if sources.insert((src.name.clone(), table.name.clone()), id.clone()).is_some() {
                    bail!("{rel}: source '{}.{}' is declared twice", src.name, table.name);
                }
                let owner = format!("source '{}.{}'", src.name, table.name);
                collect_tests(&mut decls, &id, &owner, &rel, &table.columns, &table.tests)?;
                nodes.insert(
                    id.clone(),
                    Box::new(Node {
                        id,
                        kind: NodeKind::Source,
                        name: format!("{}.{}", src.name, table.name),
                        path: PathBuf::from(&rel),
                        fqn: vec![name.clone(), src.name.clone(), table.name.clone()],
                        config,
                        raw_sql: String::new(),
                        depends_on: BTreeSet::new(),
                        materialization: Materialization::View,
                        attached_to: None,
                        test: None,
                        source_relation: Some((source_database.clone(), schema, identifier)),
                        seed_file: None,
                    }),
                );
            }
        }
        for (resources, kind) in [(props.models, NodeKind::Model), (props.seeds, NodeKind::Seed)] {
            for res in resources {
                let id = format!("{}.{name}.{}", kind.as_str(), res.name);
                let Some(node) = nodes.get_mut(&id) else {
                    // dbt warns and drops the patch and its tests; so does airlock
                    let candidates: Vec<&str> = by_name.keys().map(String::as_str).collect();
                    let section = if kind == NodeKind::Model { "models" } else { "seeds" };
                    eprintln!(
                        "airlock: warning: {rel}: did not find matching node for patch with name '{}' in the '{section}' section; its properties and tests are ignored{}",
                        res.name,
                        crate::suggest::hint(&res.name, candidates)
                    );
                    continue;
                };
                let what = format!("{} '{}'", kind.as_str(), res.name);
                if !res.versions.is_null() || !res.latest_version.is_null() {
                    refusals.add(&rel, format!("model versions (versions:) on {what}"));
                }
                if !res.constraints.is_null() || res.columns.iter().any(|c| !c.constraints.is_null()) {
                    refusals.add(&rel, format!("constraints on {what}"));
                }
                if let Value::Object(cfg) = &values.tree(&res.config, &rel)? {
                    for (k, v) in cfg {
                        apply_config(&mut node.config, k, v, &rel)?;
                    }
                }
                if !res.tags.is_null() {
                    apply_config(&mut node.config, "tags", &values.tree(&res.tags, &rel)?, &rel)?;
                }
                let owner = format!("{} '{}'", kind.as_str(), res.name);
                collect_tests(&mut decls, &id, &owner, &rel, &res.columns, &res.tests)?;
            }
        }
    }

    // nodes disabled by the project or their properties leave before rendering
    // (a ref to them is an error naming them); `config(enabled=false)` in a
    // model's own SQL is known only after rendering it, below
    disable(&mut nodes, &mut by_name, &mut disabled);

    // macros, and generic test definitions in tests/generic/ (macros to dbt)
    let mut macros = Vec::new();
    let mut macro_files = Vec::new();
    for dir in &macro_dirs {
        macro_files.extend(listing.files(dir, "sql")?);
    }
    for dir in &test_dirs {
        let base = root.join(dir);
        macro_files.extend(listing.files(dir, "sql")?.into_iter().filter(|p| in_generic(&base, p)));
    }
    for path in macro_files {
        let rel = rel_path(&root, &path);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {rel}"))?;
        let (source, names) = rewrite_macros(&text);
        refuse::check_macros(&rel, &text, &names, &mut refusals);
        macros.push(MacroFile { name: rel, source, macros: names });
    }
    // what the templates cannot render without is refused before rendering;
    // the rest after it, all together
    if refusals.blocking {
        refusals.check()?;
    }
    let test_macros: BTreeSet<String> = macros.iter().flat_map(|m| m.macros.iter().filter_map(|n| n.strip_prefix("test_").map(str::to_string))).collect();

    let mut names = Arc::new(Names { project: name.clone(), refs: by_name.clone(), sources: sources.clone(), disabled: disabled.clone() });
    let renderer = Renderer::new(&macros, vars.clone(), target.clone())?;

    // Render every model once to find refs, sources and config(); a model is
    // one statement (user SQL never reaches the warehouse as a batch).
    // Rendered in parallel; results applied (and the first error reported) in order
    crate::phase::mark("load: properties applied");
    let placeholder = placeholder_placement(&nodes);
    let models: Vec<&Node> = nodes.values().map(|n| &**n).filter(|n| n.kind == NodeKind::Model).collect();
    let renders = crate::par::map(&models, |node| -> Result<_> {
        let scope = RenderScope::new(names.clone(), placeholder.clone(), Some(placeholder(&node.id)), false);
        let path = node.path.display().to_string();
        let rendered = renderer.render(&path, &node.raw_sql, &scope)?;
        one_statement(&rendered, &path, "a model is one SELECT")?;
        Ok((node.id.clone(), path, scope.take()))
    });
    for render in renders {
        let (id, path, rec) = render?;
        let origin = format!("config() in {path}");
        let node = nodes.get_mut(&id).expect("present");
        for (k, v) in &rec.config {
            apply_config(&mut node.config, k, v, &origin)?;
        }
        node.depends_on.extend(rec.refs);
        node.depends_on.extend(rec.sources);
    }
    if nodes.values().any(|n| n.config.enabled == Some(false)) {
        disable(&mut nodes, &mut by_name, &mut disabled);
        for node in nodes.values() {
            if let Some(off) = node.depends_on.iter().find(|d| !nodes.contains_key(*d)) {
                let gone = off.rsplit('.').next().unwrap_or(off);
                bail!("{}: ref '{gone}' points at a disabled model ({})", node.path.display(), disabled.get(gone).cloned().unwrap_or_default());
            }
        }
        names = Arc::new(Names { project: name.clone(), refs: by_name, sources, disabled });
    }
    crate::phase::mark("load: models rendered");
    // hooks are rendered when they run; here each must render and be one statement
    for node in nodes.values().filter(|n| n.is_relation()) {
        for hook in node.config.pre_hook.iter().chain(node.config.post_hook.iter()) {
            let scope = RenderScope::new(names.clone(), placeholder.clone(), Some(placeholder(&node.id)), false);
            let where_ = format!("{} (hook)", node.path.display());
            let rendered = renderer.render(&where_, hook, &scope)?;
            one_statement(&rendered, &where_, "a hook is one statement; list several hooks instead")?;
        }
    }
    for hook in on_run_start.iter().chain(on_run_end.iter()) {
        let scope = RenderScope::new(names.clone(), placeholder.clone(), None, false);
        let rendered = renderer.render("dbt_project.yml (on-run-start/on-run-end)", hook, &scope)?;
        one_statement(&rendered, "dbt_project.yml (on-run-start/on-run-end)", "a hook is one statement; list several hooks instead")?;
    }

    // generic tests become nodes: named in declaration order (a repeated
    // name gets a suffix), built across cores, inserted in that order (the
    // first error reported is the first in the files)
    let mut test_names: HashMap<String, usize> = HashMap::new();
    let mut named = Vec::with_capacity(decls.len());
    for (owner_id, decl, rel) in decls {
        let Some(owner) = nodes.get(&owner_id) else { continue }; // on a disabled node
        let builtin = super::is_builtin_test(&decl.test);
        if !builtin && !test_macros.contains(&decl.test) {
            let what = if decl.test.contains('.') {
                format!("package generic test '{}' (packages are not read by the native builder yet)", decl.test)
            } else {
                let known: Vec<&str> = properties::BUILTIN_TESTS.iter().copied().chain(test_macros.iter().map(String::as_str)).collect();
                format!(
                    "unknown test '{}'{}: no built-in test and no {{% test {} %}} in macros/ or tests/generic/",
                    decl.test,
                    crate::suggest::hint(&decl.test, known),
                    decl.test
                )
            };
            refusals.add(&rel, what);
            continue;
        }
        let owner_name = owner.name.replace('.', "_");
        let prefix = if owner.kind == NodeKind::Source { "source_" } else { "" };
        let base = match decl.column.as_deref() {
            None | Some("") => format!("{prefix}{}_{owner_name}", decl.test),
            Some(column) => format!("{prefix}{}_{owner_name}_{}", decl.test, column.replace([' ', '"'], "_")),
        };
        let n = test_names.entry(base.clone()).or_insert(0);
        *n += 1;
        let test_name = if *n == 1 { base } else { format!("{base}_{n}") };
        named.push((owner_id, decl, rel, test_name, builtin));
    }
    // each declaration moves into its node
    let built = crate::par::map_owned(named, |(owner_id, decl, rel, test_name, builtin)| -> Result<Box<Node>> {
        let TestDecl { test, column, mut args, config: declared } = decl;
        let mut depends_on = BTreeSet::from([owner_id.clone()]);
        if test == "relationships" {
            let to = args.get("to").and_then(Value::as_str).ok_or_else(|| anyhow!("{rel}: relationships test on {owner_id}: 'to' must be a string like ref('customers')"))?;
            let scope = RenderScope::new(names.clone(), placeholder.clone(), None, false);
            let expr = if to.contains("ref(") || to.contains("source(") { format!("{{{{ {to} }}}}") } else { format!("{{{{ ref('{to}') }}}}") };
            renderer.render(&rel, &expr, &scope)?;
            let rec = scope.take();
            let target = rec.refs.into_iter().chain(rec.sources).next().ok_or_else(|| anyhow!("{rel}: relationships 'to: {to}' names no model or source"))?;
            args.insert("to_node".into(), Value::String(target.clone()));
            depends_on.insert(target);
        }
        let mut config = NodeConfig::default();
        if !builtin {
            // a custom test renders once here: its arguments' refs are
            // dependencies, and config() in its definition is its default config
            let scope = RenderScope::new(names.clone(), placeholder.clone(), Some(placeholder(&owner_id)), false);
            let call = crate::render::test_macro_call(&test, column.as_deref(), &args)?;
            renderer.render(&rel, &call, &scope).with_context(|| format!("test '{test}' on {owner_id}"))?;
            let rec = scope.take();
            depends_on.extend(rec.refs);
            depends_on.extend(rec.sources);
            for (k, v) in &rec.config {
                apply_config(&mut config, k, v, &format!("config() in test '{test}'"))?;
            }
        }
        let fqn = vec![name.clone(), test_name.clone()];
        apply_tree(&file.tests, &fqn, &mut config, "dbt_project.yml")?;
        if let Value::Object(cfg) = &values.tree(&declared, &rel)? {
            for (k, v) in cfg {
                apply_config(&mut config, k, v, &rel)?;
            }
        }
        Ok(Box::new(Node {
            id: format!("test.{name}.{test_name}"),
            kind: NodeKind::Test,
            name: test_name,
            path: PathBuf::from(rel),
            fqn,
            config,
            raw_sql: String::new(),
            depends_on,
            materialization: Materialization::View,
            attached_to: Some(owner_id),
            test: Some(TestKind::Generic { name: test, column: column.unwrap_or_default(), args }),
            source_relation: None,
            seed_file: None,
        }))
    });
    for node in built {
        let node = node?;
        nodes.insert(node.id.clone(), node);
    }
    crate::phase::mark("load: generic tests");

    // singular tests
    for dir in &test_dirs {
        for path in listing.files(dir, "sql")? {
            let rel = rel_path(&root, &path);
            if rel.split('/').any(|part| part == "generic") {
                continue; // generic test definitions, not tests
            }
            let raw_sql = std::fs::read_to_string(&path).with_context(|| format!("cannot read {rel}"))?;
            let stem = file_stem(&path);
            let scope = RenderScope::new(names.clone(), placeholder.clone(), None, false);
            let rendered = renderer.render(&rel, &raw_sql, &scope)?;
            one_statement(&rendered, &rel, "a test is one SELECT of its failing rows")?;
            let rec = scope.take();
            let mut config = NodeConfig::default();
            let fqn = fqn_of(&name, dir, &root, &path);
            apply_tree(&file.tests, &fqn, &mut config, "dbt_project.yml")?;
            for (k, v) in &rec.config {
                apply_config(&mut config, k, v, &format!("config() in {rel}"))?;
            }
            let depends_on: BTreeSet<NodeId> = rec.refs.iter().chain(rec.sources.iter()).cloned().collect();
            // a singular test guards the last model it reads, like dbt's attachment
            let attached_to = rec.refs.last().or(rec.sources.last()).cloned();
            let id = format!("test.{name}.{stem}");
            if nodes.contains_key(&id) {
                bail!("duplicate test name '{stem}': {rel} and {}", nodes[&id].path.display());
            }
            nodes.insert(
                id.clone(),
                Box::new(Node {
                    id,
                    kind: NodeKind::Test,
                    name: stem,
                    path: PathBuf::from(&rel),
                    fqn,
                    config,
                    raw_sql: raw_sql.clone(),
                    depends_on,
                    materialization: Materialization::View,
                    attached_to,
                    test: Some(TestKind::Singular { sql: raw_sql }),
                    source_relation: None,
                    seed_file: None,
                }),
            );
        }
    }

    crate::phase::mark("load: singular tests");
    // materializations
    for node in nodes.values_mut() {
        if node.kind != NodeKind::Model {
            continue;
        }
        let m = node.config.materialized.as_deref().unwrap_or("view");
        node.materialization = Materialization::parse(m).filter(|m| *m != Materialization::Seed).ok_or_else(|| {
            anyhow!(
                "{}: unknown materialization '{m}'{}; the native builder builds view, table, incremental, ephemeral (others run with --builder dbt)",
                node.path.display(),
                crate::suggest::hint(m, ["view", "table", "incremental", "ephemeral"])
            )
        })?;
    }

    // a singular test switched off by config(enabled=false) is no test
    nodes.retain(|_, n| !(n.kind == NodeKind::Test && n.config.enabled == Some(false)));

    for node in nodes.values() {
        refuse::check_node(node, &target, &mut refusals);
    }
    crate::phase::mark("load: nodes checked");
    refusals.check()?;
    check_relations(&nodes, &target)?;
    crate::phase::mark("load: relations checked");

    // a BTreeMap iterates in id order: the IndexMap keeps it
    let nodes = nodes.into_iter().collect();
    Ok(Loaded { project: Project { name, root, profile, vars, nodes, macros, on_run_start, on_run_end, quoting }, renderer, names })
}

/// Files of constructs the native builder does not build yet: Python models,
/// snapshots, functions (UDFs) and packages.
fn refuse_files(
    root: &Path,
    file: &DbtProjectFile,
    model_dirs: &[String],
    snapshot_dirs: &[String],
    function_dirs: &[String],
    listing: &mut Listing,
    out: &mut Refusals,
) -> Result<()> {
    for dir in model_dirs {
        for path in listing.files(dir, "py")? {
            out.add(rel_path(root, &path), "Python model");
        }
    }
    for dir in snapshot_dirs {
        for path in listing.files(dir, "sql")? {
            out.add(rel_path(root, &path), "snapshot");
        }
        for ext in ["yml", "yaml"] {
            for path in listing.files(dir, ext)? {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.lines().any(|l| l.starts_with("snapshots:")) {
                    out.add(rel_path(root, &path), "snapshot (snapshots:)");
                }
            }
        }
    }
    for dir in function_dirs {
        for ext in ["sql", "py"] {
            for path in listing.files(dir, ext)? {
                out.add(rel_path(root, &path), "function / UDF");
            }
        }
    }
    let mut declared = 0;
    for name in ["packages.yml", "dependencies.yml"] {
        let path = root.join(name);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let yaml: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| anyhow!("{name}: invalid YAML: {e}"))?;
        let json = serde_json::to_value(yaml).map_err(|e| anyhow!("{name}: unsupported YAML: {e}"))?;
        for entry in json.get("packages").and_then(Value::as_array).into_iter().flatten() {
            let id = ["package", "local", "git", "tarball", "private", "name"]
                .iter()
                .find_map(|k| entry.get(*k).map(|v| format!("{k}: {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))))
                .unwrap_or_else(|| entry.to_string());
            out.add(name, format!("package ({id}); packages are not read by the native builder yet"));
            out.blocking = true;
            declared += 1;
        }
        for entry in json.get("projects").and_then(Value::as_array).into_iter().flatten() {
            let id = entry.get("name").and_then(Value::as_str).unwrap_or("?");
            out.add(name, format!("cross-project dependency '{id}'"));
            out.blocking = true;
            declared += 1;
        }
    }
    if declared == 0 {
        let install = file.packages_install_path.clone().unwrap_or_else(|| "dbt_packages".to_string());
        if let Ok(entries) = std::fs::read_dir(root.join(&install)) {
            let mut dirs: Vec<String> = entries.flatten().filter(|e| e.path().join("dbt_project.yml").is_file()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            dirs.sort();
            for d in dirs {
                out.add(format!("{install}/{d}"), "installed package; packages are not read by the native builder yet");
                out.blocking = true;
            }
        }
    }
    Ok(())
}

/// Whether `path` lies in a `generic` folder under `base` (tests/generic/:
/// generic test definitions, which dbt reads as macros).
fn in_generic(base: &Path, path: &Path) -> bool {
    path.strip_prefix(base).map(|rel| rel.components().any(|c| c.as_os_str() == "generic")).unwrap_or(false)
}

/// dbt's check: no two models or seeds may have the same relation (schema
/// and alias); they would overwrite each other in audit and in prod, and the
/// gate's outcome would depend on which was built last.
fn check_relations(nodes: &LoadNodes, target: &Value) -> Result<()> {
    let target_schema = target.get("schema").and_then(Value::as_str).unwrap_or("main");
    let mut seen: HashMap<(String, String), &Node> = HashMap::new();
    for node in nodes.values().filter(|n| n.is_relation()) {
        // dbt's generate_schema_name, as compile::Layout::prod_schema applies it
        let schema = match node.config.schema.as_deref().map(str::trim) {
            Some(custom) if !custom.is_empty() => format!("{target_schema}_{custom}"),
            _ => target_schema.to_string(),
        };
        // compared as DuckDB and unquoted Snowflake names compare: without case
        let key = (schema.to_lowercase(), node.identifier().to_lowercase());
        if let Some(other) = seen.insert(key, node) {
            bail!(
                "two resources have the same relation {schema}.{}: {} '{}' ({}) and {} '{}' ({}); give one of them another alias or schema",
                node.identifier(),
                other.kind.as_str(),
                other.name,
                other.path.display(),
                node.kind.as_str(),
                node.name,
                node.path.display()
            );
        }
    }
    Ok(())
}

/// Move disabled models and seeds out of the project, keeping their names for
/// a clear error when something refers to them.
fn disable(nodes: &mut LoadNodes, by_name: &mut HashMap<String, NodeId>, disabled: &mut HashMap<String, String>) {
    let off: Vec<NodeId> = nodes.values().filter(|n| n.config.enabled == Some(false) && n.kind != NodeKind::Test).map(|n| n.id.clone()).collect();
    for id in off {
        let node = nodes.remove(&id).expect("present");
        by_name.remove(&node.name);
        disabled.insert(node.name.clone(), node.path.display().to_string());
    }
    // generic tests on a node that is gone go with it
    let orphans: Vec<NodeId> = nodes.values().filter(|n| n.attached_to.as_ref().is_some_and(|a| !nodes.contains_key(a))).map(|n| n.id.clone()).collect();
    for id in orphans {
        nodes.remove(&id);
    }
}

/// Refuse SQL text that holds more than one statement, naming file and line.
fn one_statement(rendered: &str, file: &str, rule: &str) -> Result<()> {
    if let Some(at) = crate::sqltext::second_statement(rendered) {
        let line = crate::sqltext::line_of(rendered, at);
        bail!("{file}:{line}: more than one SQL statement ({rule}; found another statement after the ';' here)");
    }
    Ok(())
}

/// At load time relations render as their prod names; the SQL is thrown away,
/// only what the template referenced is kept.
fn placeholder_placement(nodes: &LoadNodes) -> crate::render::Placement {
    let idents: HashMap<NodeId, String> = nodes.values().map(|n| (n.id.clone(), n.identifier().to_string())).collect();
    Arc::new(move |id: &str| {
        let ident = idents.get(id).cloned().unwrap_or_else(|| id.to_string());
        Relation { database: None, schema: "main".into(), identifier: ident.clone(), rendered: format!("\"main\".\"{ident}\"") }
    })
}

fn collect_tests(
    out: &mut Vec<(NodeId, TestDecl, String)>,
    owner_id: &str,
    owner: &str,
    rel: &str,
    columns: &[ColumnProps],
    tests: &TestLists,
) -> Result<()> {
    for col in columns {
        for entry in col.tests.all() {
            let decl = properties::parse_test(entry, Some(&col.name), &format!("column '{}' of {owner}", col.name), rel)?;
            out.push((owner_id.to_string(), decl, rel.to_string()));
        }
    }
    for entry in tests.all() {
        let decl = properties::parse_test(entry, None, owner, rel)?;
        out.push((owner_id.to_string(), decl, rel.to_string()));
    }
    Ok(())
}

fn insert_unique(nodes: &mut LoadNodes, by_name: &mut HashMap<String, NodeId>, node: Node) -> Result<()> {
    if let Some(existing) = by_name.get(&node.name) {
        let other = &nodes[existing];
        bail!(
            "duplicate {} name '{}': {} and {} (names must be unique across models and seeds)",
            node.kind.as_str(),
            node.name,
            other.path.display(),
            node.path.display()
        );
    }
    by_name.insert(node.name.clone(), node.id.clone());
    nodes.insert(node.id.clone(), Box::new(node));
    Ok(())
}

/// The project's folders, each listed once (a model folder holds the SQL
/// and the YAML): files by extension, sorted, recursively.
struct Listing<'a> {
    root: &'a Path,
    listed: HashMap<String, Vec<PathBuf>>,
}

impl<'a> Listing<'a> {
    fn new(root: &'a Path) -> Self {
        Listing { root, listed: HashMap::new() }
    }

    /// Files with extension `ext` under `root/dir`, sorted, recursively.
    fn files(&mut self, dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
        if !self.listed.contains_key(dir) {
            let all = list_files(self.root, dir)?;
            self.listed.insert(dir.to_string(), all);
        }
        Ok(self.listed[dir].iter().filter(|p| p.extension().is_some_and(|e| e == ext)).cloned().collect())
    }
}

/// Every file under `root/dir`, sorted, recursively (symlinks followed).
fn list_files(root: &Path, dir: &str) -> Result<Vec<PathBuf>> {
    let base = root.join(dir);
    let mut out = Vec::new();
    if !base.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![base];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            // the entry's type comes with the listing; only a symlink needs a stat
            let is_dir = match entry.file_type() {
                Ok(t) if !t.is_symlink() => t.is_dir(),
                _ => path.is_dir(),
            };
            if is_dir {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn fqn_of(project: &str, dir: &str, root: &Path, path: &Path) -> Vec<String> {
    let base = root.join(dir);
    let rel = path.strip_prefix(&base).unwrap_or(path);
    let mut fqn = vec![project.to_string()];
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if let Some((last, folders)) = parts.split_last() {
        fqn.extend(folders.iter().cloned());
        fqn.push(last.rsplit_once('.').map(|(s, _)| s.to_string()).unwrap_or_else(|| last.clone()));
    }
    fqn
}

/// A seed must be a CSV with a header and rows as wide as the header.
fn check_csv(path: &Path, rel: &str) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_path(path).map_err(|e| anyhow!("{rel}: {e}"))?;
    let headers = reader.headers().map_err(|e| anyhow!("{rel}: cannot read the header: {e}"))?.clone();
    if headers.is_empty() || headers.iter().all(|h| h.trim().is_empty()) {
        bail!("{rel}: a seed needs a header row");
    }
    let mut seen = BTreeSet::new();
    for h in headers.iter() {
        if !seen.insert(h) {
            bail!("{rel}:1: column '{h}' appears twice in the header");
        }
    }
    for record in reader.records() {
        if let Err(e) = record {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            bail!("{rel}:{line}: {}", e.to_string().split(": ").last().unwrap_or("malformed row"));
        }
    }
    Ok(())
}

/// Find macro names and turn dbt's `{% test x(...) %}` blocks into macros
/// named `test_x`, which minijinja understands.
fn rewrite_macros(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let trimmed = inner.trim_start_matches('-').trim_start();
        let lead_ws = &inner[..inner.len() - trimmed.len()];
        let (keyword, body) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed.trim_end_matches('-').trim_end(), ""));
        let new_inner = match keyword {
            "macro" | "test" => {
                let body = body.trim_start();
                // byte length of the name: names may hold non-ASCII letters (`café`)
                let len: usize = body.chars().take_while(|c| c.is_alphanumeric() || *c == '_').map(char::len_utf8).sum();
                let ident = if keyword == "test" { format!("test_{}", &body[..len]) } else { body[..len].to_string() };
                let remainder = &body[len..];
                names.push(ident.clone());
                format!("{lead_ws}macro {ident}{remainder}")
            }
            "endtest" => inner.replacen("endtest", "endmacro", 1),
            _ => inner.to_string(),
        };
        out.push_str("{%");
        out.push_str(&new_inner);
        out.push_str("%}");
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    names.sort();
    names.dedup();
    (out, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_blocks_become_prefixed_macros() {
        let (src, names) = rewrite_macros("{% test is_even(model, column_name) %}select 1{% endtest %}\n{%- macro m(x) -%}{{ x }}{%- endmacro %}");
        assert_eq!(names, vec!["m".to_string(), "test_is_even".to_string()]);
        assert!(src.contains("{% macro test_is_even(model, column_name) %}"));
        assert!(src.contains("{% endmacro %}"));
        assert!(src.contains("{%- macro m(x) -%}"));
    }

    #[test]
    fn fqn_follows_folders() {
        let root = Path::new("/p");
        assert_eq!(fqn_of("shop", "models", root, Path::new("/p/models/marts/orders.sql")), vec!["shop", "marts", "orders"]);
    }
}
