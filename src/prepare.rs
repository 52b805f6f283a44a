//! What one run of a strategy will do, computed before anything is written:
//! the scoped selection, what is staged from prod, the audit preparation, the
//! build steps and the publish changes. `deploy` executes it; `plan` prints
//! it; `plan --strategy all` compares it across strategies.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::build::{self, BuildInput, Catalog, Step};
use crate::project::{Materialization, NodeId, NodeKind};
use crate::publish::{Change, Desired};
use crate::session::Session;
use crate::strategy::{BuildScope, Publish, Stage, Strategy};
use crate::warehouse::ObjectKind;

pub struct Prepared<'s> {
    pub strategy: &'s Strategy,
    pub selected: Arc<BTreeSet<NodeId>>,
    /// relations copied from prod into audit before the build
    pub staged: BTreeSet<NodeId>,
    /// (prod schema, audit schema) pairs this run touches
    pub locations: Vec<(String, String)>,
    /// reset the audit location and stage prod into it
    pub prep: Vec<String>,
    /// shared by every strategy of one `plan --strategy all` that builds the same
    pub steps: Arc<Vec<Step>>,
    pub changes: Vec<Change>,
    /// tagged models the strategy would publish but this run did not build
    pub unbuilt_tagged: Vec<String>,
    /// estimated rows copied by staging and publishing (from the warehouse's statistics)
    pub rows_copied: Option<u64>,
    /// `on-run-start` / `on-run-end`, rendered for the audit location
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    /// nodes of the project this run leaves out, with the reason
    pub left_out: Vec<(String, String)>,
}

/// What `plan --strategy all` computes once for every strategy that builds
/// the same: the scoped selection depends only on the build scope and the
/// mirror tag, and the build steps on that and what is staged (the session
/// and prod being the same). Per strategy only staging and publish remain.
#[derive(Default)]
pub struct BuildPlans {
    selections: Mutex<Vec<(Scope, Arc<BTreeSet<NodeId>>)>>,
    steps: Mutex<Vec<(Scope, BTreeSet<NodeId>, Arc<Vec<Step>>)>>,
    /// views' SELECTs against prod, as every strategy publishes them
    views: Mutex<std::collections::HashMap<NodeId, Arc<str>>>,
}

/// What decides a strategy's scoped selection.
type Scope = (BuildScope, String);

impl BuildPlans {
    fn selection(&self, scope: &Scope, select: impl FnOnce() -> Result<BTreeSet<NodeId>>) -> Result<Arc<BTreeSet<NodeId>>> {
        let mut known = self.selections.lock().expect("build plans poisoned");
        if let Some((_, selected)) = known.iter().find(|(s, _)| s == scope) {
            return Ok(selected.clone());
        }
        let selected = Arc::new(select()?);
        known.push((scope.clone(), selected.clone()));
        Ok(selected)
    }

    fn steps(&self, scope: &Scope, staged: &BTreeSet<NodeId>, plan: impl FnOnce() -> Result<Vec<Step>>) -> Result<Arc<Vec<Step>>> {
        let mut known = self.steps.lock().expect("build plans poisoned");
        if let Some((_, _, steps)) = known.iter().find(|(s, st, _)| s == scope && st == staged) {
            return Ok(steps.clone());
        }
        let steps = Arc::new(plan()?);
        known.push((scope.clone(), staged.clone(), steps.clone()));
        Ok(steps)
    }

    fn view(&self, id: &NodeId, render: impl FnOnce() -> Result<String>) -> Result<Arc<str>> {
        if let Some(select) = self.views.lock().expect("build plans poisoned").get(id) {
            return Ok(select.clone());
        }
        let select: Arc<str> = render()?.into();
        self.views.lock().expect("build plans poisoned").insert(id.clone(), select.clone());
        Ok(select)
    }
}

pub fn prepare<'s>(session: &Session, strategy: &'s Strategy, prod: &Catalog) -> Result<Prepared<'s>> {
    prepare_with(session, strategy, prod, &BuildPlans::default())
}

/// [`prepare`], reusing the build steps `plans` already holds for the same selection and staging.
pub fn prepare_with<'s>(session: &Session, strategy: &'s Strategy, prod: &Catalog, plans: &BuildPlans) -> Result<Prepared<'s>> {
    let mut prepared = prepare_head(session, strategy, prod, plans)?;
    prepared.steps = build_steps(session, &prepared, prod, plans)?;
    prepare_tail(session, &mut prepared, prod, plans)?;
    Ok(prepared)
}

/// The first part of [`prepare_with`]: the scoped selection, what is staged
/// and the audit preparation; the steps and the publish are left empty.
pub fn prepare_head<'s>(session: &Session, strategy: &'s Strategy, prod: &Catalog, plans: &BuildPlans) -> Result<Prepared<'s>> {
    let project = session.project();
    let layout = &session.layout;
    let d = layout.dialect;
    strategy.check_support(d)?;
    let scope: Scope = (strategy.steps.build, mirror_tag(session, strategy));
    let selected = plans.selection(&scope, || scoped_selection(session, strategy))?;
    // by position in the project: every loop below visits all of its nodes
    let in_selection = project.mask(selected.iter());
    let order = session.dag.topo_positions();
    let relations: Vec<usize> = order.iter().copied().filter(|&i| in_selection[i] && project.at(i).is_relation()).collect();

    // staging: the audit location starts as a copy of prod's tables
    let mut staged = BTreeSet::new();
    if strategy.steps.stage == Stage::CloneProd {
        for (i, node) in project.nodes.values().enumerate().filter(|(_, n)| n.is_relation()) {
            let rebuilt_fresh = in_selection[i] && node.materialization != Materialization::Incremental;
            let refresh = crate::project::Project::full_refresh(node, session.cfg.full_refresh);
            if !rebuilt_fresh && node.materialization != Materialization::View && prod.is_table(&layout.prod_schema(node), &layout.ident(node)) && !refresh {
                staged.insert(node.id.clone());
            }
        }
    }
    let mut schemas: BTreeSet<String> = relations.iter().map(|&i| layout.prod_schema(project.at(i))).collect();
    schemas.extend(staged.iter().map(|id| layout.prod_schema(project.node(id))));
    let locations: Vec<(String, String)> = schemas.iter().map(|s| (s.clone(), layout.audit_schema(s))).collect();

    let mut prep = Vec::new();
    let location_clone = strategy.steps.stage == Stage::CloneProd && strategy.template(d, "clone_location").is_some();
    if let Some(db) = &layout.audit_database {
        // the audit database starts as a zero-copy clone of prod's (empty on
        // the first deploy); creating a database or a schema makes it the
        // session's current one, so the session goes back to prod last
        strategy.check_audit_database(d)?;
        let (p, a) = (d.quote(&db.prod), d.quote(&db.audit));
        prep.push(strategy.render(d, "clone_database", &[("source", &p), ("target", &a)])?);
        prep.extend(locations.iter().map(|(s, _)| format!("CREATE SCHEMA IF NOT EXISTS {}", layout.audit_location(s))));
        prep.push(format!("USE DATABASE {p}"));
    }
    for (p, a) in locations.iter().filter(|_| layout.audit_database.is_none()) {
        if location_clone && prod.has_objects_in(p) {
            prep.push(strategy.render(d, "clone_location", &[("source", &d.quote(p)), ("target", &d.quote(a))])?);
        } else if location_clone {
            // the first deploy: no prod to start from
            prep.push(format!("CREATE OR REPLACE SCHEMA {}", d.quote(a)));
        } else {
            prep.push(format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(a)));
            prep.push(format!("CREATE SCHEMA {}", d.quote(a)));
        }
    }
    let mut rows_copied = Some(0u64);
    if !location_clone {
        for node in order.iter().map(|&i| project.at(i)).filter(|n| staged.contains(&n.id)) {
            let (source, target) = (layout.prod_relation(node).rendered, layout.audit_relation(node).rendered);
            prep.push(strategy.render(d, "clone_table", &[("source", &source), ("target", &target)])?);
            count_rows(&mut rows_copied, prod, &layout.prod_schema(node), &layout.ident(node));
        }
    }
    Ok(Prepared {
        strategy,
        selected,
        staged,
        locations,
        prep,
        steps: Arc::default(),
        changes: Vec::new(),
        unbuilt_tagged: Vec::new(),
        rows_copied,
        on_run_start: Vec::new(),
        on_run_end: Vec::new(),
        left_out: Vec::new(),
    })
}

/// The build steps of a [`prepare_head`]ed strategy (shared through `plans`).
pub fn build_steps(session: &Session, prepared: &Prepared, prod: &Catalog, plans: &BuildPlans) -> Result<Arc<Vec<Step>>> {
    let strategy = prepared.strategy;
    let scope: Scope = (strategy.steps.build, mirror_tag(session, strategy));
    let compiler = session.compiler();
    let input = BuildInput { compiler: &compiler, dag: &session.dag, selected: &prepared.selected, staged: &prepared.staged, prod, full_refresh: session.cfg.full_refresh };
    plans.steps(&scope, &prepared.staged, || build::plan_steps(&input)).map_err(|e| mirror_hint(e, session, strategy))
}

/// The last part of [`prepare_with`]: what publish will make of prod, the
/// run hooks, what is left out. Needs no build steps.
pub fn prepare_tail(session: &Session, prepared: &mut Prepared, prod: &Catalog, plans: &BuildPlans) -> Result<()> {
    let project = session.project();
    let layout = &session.layout;
    let d = layout.dialect;
    let strategy = prepared.strategy;
    let selected = prepared.selected.clone();
    let in_selection = project.mask(selected.iter());
    let order = session.dag.topo_positions();
    let relations: Vec<usize> = order.iter().copied().filter(|&i| in_selection[i] && project.at(i).is_relation()).collect();
    let compiler = session.compiler();

    // what the strategy publishes, by position
    let publish_set: Vec<bool> = match strategy.steps.publish {
        Publish::Rebuild => {
            let spec = session.cfg.publish_select.clone().or_else(|| strategy.param_str("publish_select")).unwrap_or_else(|| "tag:mart".into());
            let chosen = session.dag.select(project, std::slice::from_ref(&spec), &[]).with_context(|| format!("--publish-select / publish_select '{spec}'"))?;
            let mut set = project.mask(chosen.iter());
            for (i, chosen) in set.iter_mut().enumerate() {
                *chosen &= in_selection[i] && project.at(i).is_relation();
            }
            set
        }
        Publish::CloneTagged => {
            let tags = strategy.param_list("tags");
            let mut set = vec![false; project.nodes.len()];
            for &i in relations.iter().filter(|&&i| project.at(i).config.tags.iter().any(|t| tags.contains(t))) {
                set[i] = true;
            }
            set
        }
        Publish::Swap | Publish::CloneBack | Publish::Replace => {
            let mut set = vec![false; project.nodes.len()];
            for &i in &relations {
                set[i] = true;
            }
            set
        }
    };
    let unbuilt_tagged: Vec<String> = match strategy.steps.publish {
        Publish::CloneTagged => {
            let tags = strategy.param_list("tags");
            let nodes = project.nodes.values().enumerate();
            nodes.filter(|(i, n)| n.is_relation() && !in_selection[*i] && n.config.tags.iter().any(|t| tags.contains(t))).map(|(_, n)| n.name.clone()).collect()
        }
        _ => vec![],
    };
    let place_prod = layout.placement(project, &BTreeSet::new());
    // wap: rebuilt tables read the audited relations of everything not rebuilt
    let place_rebuild = (strategy.steps.publish == Publish::Rebuild).then(|| {
        let not_rebuilt: BTreeSet<NodeId> = selected.iter().filter(|id| project.position(id).is_some_and(|i| !publish_set[i])).cloned().collect();
        layout.placement(project, &not_rebuilt)
    });
    let mut changes = Vec::with_capacity(order.iter().filter(|&&i| publish_set[i]).count());
    for node in order.iter().filter(|&&i| publish_set[i]).map(|&i| project.at(i)) {
        let id = &node.id;
        let schema = layout.prod_schema(node);
        let prev = prod.get(&schema, &layout.ident(node)).cloned();
        let desired = match node.materialization {
            Materialization::View => Desired::View {
                select: plans.view(id, || compiler.select_sql(node, &place_prod, Some(layout.prod_relation(node)), false).with_context(|| format!("rendering view {} against prod", node.name)))?,
            },
            Materialization::Table if strategy.steps.publish == Publish::Rebuild => {
                let place = place_rebuild.as_ref().expect("placed for a rebuild");
                Desired::Rebuild {
                    select: compiler.select_sql(node, place, Some(layout.prod_relation(node)), false).with_context(|| format!("rendering {} for its rebuild in prod", node.name))?,
                }
            }
            _ => {
                if prev.as_ref().is_some_and(|p| p.kind == ObjectKind::Table) {
                    count_rows(&mut prepared.rows_copied, prod, &schema, &layout.ident(node)); // the backup copy
                }
                let audit = layout.audit_relation(node);
                Desired::Table { source: audit.database.is_none().then(|| (audit.schema, audit.identifier)), from: audit.rendered }
            }
        };
        changes.push(Change { schema, name: layout.ident(node), desired, prev });
    }
    if d != crate::warehouse::Dialect::DuckDb {
        prepared.rows_copied = None; // remote clones are zero-copy or priced by the warehouse
    }
    let no_place = (!project.on_run_start.is_empty() || !project.on_run_end.is_empty()).then(|| layout.placement(project, &selected));
    let run_hook = |h: &String| compiler.hook_sql("dbt_project.yml (on-run hook)", h, no_place.as_ref().expect("placed where there are hooks"), None);
    let on_run_start = project.on_run_start.iter().map(run_hook).collect::<Result<Vec<_>>>()?;
    let on_run_end = project.on_run_end.iter().map(run_hook).collect::<Result<Vec<_>>>()?;
    prepared.left_out = left_out(session, strategy, &in_selection);
    prepared.changes = changes;
    prepared.unbuilt_tagged = unbuilt_tagged;
    prepared.on_run_start = on_run_start;
    prepared.on_run_end = on_run_end;
    Ok(())
}

/// Adds the rows prod holds in `schema.name` to `rows` (None: not known).
fn count_rows(rows: &mut Option<u64>, prod: &Catalog, schema: &str, name: &str) {
    *rows = match (*rows, prod.get(schema, name).and_then(|e| e.rows)) {
        (Some(total), Some(r)) => Some(total + r),
        _ => None,
    };
}

/// What of the project this run does not build, and why: the raw mirror
/// (built only by the mirror strategy), everything else under the mirror
/// strategy, nodes outside the selection, disabled models. `built`: by
/// position in the project.
fn left_out(session: &Session, strategy: &Strategy, built: &[bool]) -> Vec<(String, String)> {
    let project = session.project();
    let tag = mirror_tag(session, strategy);
    let mut out: Vec<(String, String)> = project
        .nodes
        .values()
        .enumerate()
        .filter(|(i, n)| n.is_relation() && !built[*i])
        .map(|(_, n)| {
            let why = if !session.selected.contains(&n.id) {
                "not selected (read from prod)".to_string()
            } else if strategy.steps.build == BuildScope::Mirror {
                format!("not the raw mirror (strategy '{}' builds only models tagged '{tag}')", strategy.name)
            } else {
                format!("the raw mirror (tagged '{tag}'): built and published only by `--strategy mirror`; this run reads the published mirror")
            };
            (n.name.clone(), why)
        })
        .collect();
    for (name, path) in &session.loaded.names.disabled {
        out.push((name.clone(), format!("disabled (enabled: false, {path})")));
    }
    out.sort();
    out
}

/// The selection as the strategy scopes it: `mirror` builds only the raw
/// mirror; every other strategy leaves the mirror out (it reads the published
/// mirror) unless the user selected it explicitly.
pub fn scoped_selection(session: &Session, strategy: &Strategy) -> Result<BTreeSet<NodeId>> {
    let project = session.project();
    let tag = mirror_tag(session, strategy);
    let is_mirror = |id: &NodeId| {
        let n = project.node(id);
        n.kind == NodeKind::Model && n.config.tags.contains(&tag)
    };
    let attached_to = |id: &NodeId, set: &BTreeSet<NodeId>| project.node(id).attached_to.as_ref().is_some_and(|a| set.contains(a));
    let base = &session.selected;
    let mirror: BTreeSet<NodeId> = base.iter().filter(|id| is_mirror(id)).cloned().collect();
    // the mirror and the sources it copies: their tests gate the mirror refresh
    let mut guarded = mirror.clone();
    for id in &mirror {
        guarded.extend(project.node(id).depends_on.iter().filter(|d| project.node(d).kind == NodeKind::Source).cloned());
    }
    match strategy.steps.build {
        BuildScope::Mirror => {
            if mirror.is_empty() {
                bail!("strategy '{}' builds the models tagged '{tag}' (the raw mirror), and the selection has none", strategy.name);
            }
            let tests: Vec<NodeId> = base.iter().filter(|id| project.node(id).kind == NodeKind::Test && attached_to(id, &guarded)).cloned().collect();
            Ok(mirror.into_iter().chain(tests).collect())
        }
        BuildScope::Selection if session.cfg.select.is_empty() => Ok(base.iter().filter(|id| !mirror.contains(*id) && !attached_to(id, &guarded)).cloned().collect()),
        BuildScope::Selection => Ok(base.clone()),
    }
}

fn mirror_tag(session: &Session, strategy: &Strategy) -> String {
    if let Some(tag) = &session.cfg.settings.deploy.mirror_tag {
        return tag.clone();
    }
    if strategy.steps.build == BuildScope::Mirror {
        return strategy.param_str("tag").unwrap_or_else(|| "raw".into());
    }
    session.registry.strategies.values().find(|s| s.steps.build == BuildScope::Mirror).and_then(|s| s.param_str("tag")).unwrap_or_else(|| "raw".into())
}

fn mirror_hint(e: anyhow::Error, session: &Session, strategy: &Strategy) -> anyhow::Error {
    let tag = mirror_tag(session, strategy);
    let reads_mirror = session.project().relations().any(|n| n.config.tags.contains(&tag));
    if reads_mirror && e.to_string().contains("does not exist in prod") {
        e.context(format!("the raw mirror (models tagged '{tag}') is published by `airlock deploy --strategy mirror`; run it first"))
    } else {
        e
    }
}

