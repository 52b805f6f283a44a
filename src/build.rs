//! The native builder: turns the selection into steps (statements for models
//! and seeds, gate queries for tests) and runs them in dependency order, up to
//! `--threads` at once. A test runs right after the node it tests; a failing
//! error-severity test skips that node's descendants, as `dbt build` does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use tokio::task::JoinSet;

use crate::compile::{model_statements, seed_statements, Compiler};
use crate::gate;
use crate::graph::Dag;
use crate::project::{Materialization, NodeId, NodeKind, TestKind};
use crate::report::Progress;
use crate::warehouse::{CatalogEntry, ObjectKind, Rows, Warehouse};

/// Objects found in the warehouse, by (schema, name), looked up as the
/// warehouse compares names (DuckDB: case-insensitively; `Orders` and
/// `orders` are one table there).
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub objects: BTreeMap<(String, String), CatalogEntry>,
    fold_case: bool,
}

impl Catalog {
    pub fn new(dialect: crate::warehouse::Dialect, entries: Vec<CatalogEntry>) -> Self {
        let fold_case = dialect.case_insensitive_names();
        let key = |s: &str| if fold_case { s.to_lowercase() } else { s.to_string() };
        Catalog { objects: entries.into_iter().map(|e| ((key(&e.schema), key(&e.name)), e)).collect(), fold_case }
    }
    pub fn get(&self, schema: &str, name: &str) -> Option<&CatalogEntry> {
        if self.fold_case {
            self.objects.get(&(schema.to_lowercase(), name.to_lowercase()))
        } else {
            self.objects.get(&(schema.to_string(), name.to_string()))
        }
    }
    pub fn is_table(&self, schema: &str, name: &str) -> bool {
        self.get(schema, name).is_some_and(|e| e.kind == ObjectKind::Table)
    }
    /// Whether prod holds anything in `schema` (an empty schema counts as none).
    pub fn has_objects_in(&self, schema: &str) -> bool {
        let schema = if self.fold_case { schema.to_lowercase() } else { schema.to_string() };
        self.objects.keys().any(|(s, _)| *s == schema)
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: NodeId,
    /// the node's position in the project ([`Project::at`](crate::project::Project::at))
    pub at: usize,
    pub statements: Vec<String>,
    /// tests: (test id, failing-rows SQL, how the count becomes a verdict);
    /// several tests of one node run as one query
    pub group: Vec<(NodeId, String, gate::Thresholds)>,
    pub deps: Vec<NodeId>,
    /// incremental models building on a copy of prod
    pub incremental: bool,
    /// why this step cannot run at all (it reports an error, never a pass)
    pub refused: Option<String>,
    /// seeds: loaded by the warehouse, in place of `statements[at]`
    pub seed: Option<(usize, crate::warehouse::SeedLoad)>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Built,
    Pass,
    Warn { failures: u64, sample: Rows },
    Fail { failures: u64, sample: Rows },
    Error { message: String },
    Skipped { because: String },
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub id: NodeId,
    pub outcome: Outcome,
    pub micros: u64,
    /// rows the step wrote, where the warehouse reports them
    pub rows: Option<u64>,
}

impl StepResult {
    pub fn bad(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. } | Outcome::Error { .. } | Outcome::Skipped { .. })
    }
}

pub struct BuildInput<'a> {
    pub compiler: &'a Compiler<'a>,
    pub dag: &'a Dag,
    pub selected: &'a BTreeSet<NodeId>,
    /// relations copied from prod into audit before the build (read from audit)
    pub staged: &'a BTreeSet<NodeId>,
    /// prod objects, to decide incremental builds and check deferred refs
    pub prod: &'a Catalog,
    pub full_refresh: bool,
}

/// The steps that build the selection into the audit location. Nodes are
/// handled by their position in the project (see [`Project::position`]):
/// a plan of 15,000 models and 40,000 tests walks hundreds of thousands of
/// edges.
///
/// [`Project::position`]: crate::project::Project::position
pub fn plan_steps(input: &BuildInput) -> Result<Vec<Step>> {
    let BuildInput { compiler, dag, selected, staged, prod, .. } = input;
    let project = compiler.project;
    let layout = compiler.layout;
    let at = |id: &str| project.position(id).expect("every id planned is the project's");
    let in_audit: BTreeSet<NodeId> = selected.iter().filter(|id| project.node(id).is_relation()).chain(staged.iter()).cloned().collect();
    crate::phase::mark("steps: start");
    let place = layout.placement(project, &in_audit);
    crate::phase::mark("steps: placement");
    let n = project.nodes.len();
    let mut audit = vec![false; n];
    for id in &in_audit {
        audit[at(id)] = true;
    }

    // refs to relations outside the selection are read from prod: they must
    // exist there. A model that cannot is an error; a test that cannot is left
    // out with a warning (it tests a relation this run neither builds nor has)
    let mut unrunnable: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut refused = vec![false; n];
    // what each selected relation and test reads, in id order
    let mut upstream: Vec<Option<Vec<usize>>> = vec![None; n];
    for id in selected.iter() {
        let node = project.node(id);
        if !(node.is_relation() || node.kind == NodeKind::Test) {
            continue;
        }
        let ups: Vec<usize> = upstream_relations(project, id).iter().map(|d| at(d)).collect();
        for &dep in &ups {
            if audit[dep] {
                continue;
            }
            let up = project.at(dep);
            let schema = layout.prod_schema(up);
            if prod.get(&schema, &layout.ident(up)).is_none() {
                if node.kind == NodeKind::Test {
                    // fail closed: a test that cannot run gives no verdict, and that blocks
                    let why = format!(
                        "cannot run: it reads {} '{}', which is neither selected nor in prod ({})",
                        up.kind.as_str(),
                        up.name,
                        layout.dialect.relation(&schema, &layout.ident(up))
                    );
                    unrunnable.insert(id.clone(), why);
                    refused[at(id)] = true;
                    break;
                }
                anyhow::bail!(
                    "{} reads {} '{}', which is not selected and does not exist in prod ({}); select it too (e.g. --select +{})",
                    node.path.display(),
                    up.kind.as_str(),
                    up.name,
                    layout.dialect.relation(&schema, &layout.ident(up)),
                    node.name
                );
            }
        }
        upstream[at(id)] = Some(ups);
    }

    crate::phase::mark("steps: upstream");
    let order: Vec<usize> = dag.topo_order().iter().map(|id| at(id)).collect();
    let mut topo = vec![0usize; n];
    for (k, &i) in order.iter().enumerate() {
        topo[i] = k;
    }
    let is_step: Vec<bool> = (0..n).map(|i| upstream[i].is_some() && !refused[i]).collect();
    // tests by the node they are attached to, in id order
    let mut tests_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in (0..n).filter(|&i| is_step[i]) {
        let node = project.at(i);
        if node.kind == NodeKind::Test {
            if let Some(owner) = node.attached_to.as_deref().and_then(|o| project.position(o)) {
                tests_of[owner].push(i);
            }
        }
    }

    // (node, the steps it waits for) in dependency order
    let mut planned: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in order.iter().filter(|&&i| is_step[i]) {
        let node = project.at(i);
        let mut deps = Vec::new();
        let mut descendants = None;
        for &up in upstream[i].as_ref().expect("a step has its upstream") {
            if is_step[up] {
                deps.push(up);
            }
            if node.kind == NodeKind::Test {
                continue;
            }
            // wait for the tests of what we read, unless such a test itself reads us (or our descendants)
            for &t in &tests_of[up] {
                let cyclic = project.at(t).depends_on.iter().any(|d| match project.position(d) {
                    Some(j) => j == i || (topo[j] > topo[i] && descendants.get_or_insert_with(|| dag.descendants(&node.id)).contains(d)),
                    None => false,
                });
                if !cyclic {
                    deps.push(t);
                }
            }
        }
        deps.sort_unstable();
        deps.dedup();
        if node.kind != NodeKind::Source {
            planned.push((i, deps));
        }
    }
    crate::phase::mark("steps: waits");
    let lead = fused_tests(project, &planned);
    crate::phase::mark("steps: fused");
    // every step's SQL, rendered across cores; the first error in build order is the one reported
    let rendered = crate::par::map(&planned, |(i, _)| render_step(input, &place, project.at(*i)));
    crate::phase::mark("steps: rendered");
    let mut steps: Vec<Step> = Vec::with_capacity(planned.len());
    // (the step's node, what it waits for), by position
    let mut waits: Vec<(usize, Vec<usize>)> = Vec::with_capacity(planned.len());
    let mut step_at = vec![usize::MAX; n];
    for ((i, deps), sql) in planned.into_iter().zip(rendered) {
        let RenderedStep { statements, group, incremental, seed } = sql?;
        if lead[i] != usize::MAX && lead[i] != i {
            // a test joining its group: the group waits for what it waits for
            let k = step_at[lead[i]];
            steps[k].group.extend(group);
            waits[k].1.extend(deps);
            continue;
        }
        step_at[i] = steps.len();
        steps.push(Step { id: project.at(i).id.clone(), at: i, statements, group, deps: vec![], incremental, refused: None, seed });
        waits.push((i, deps));
    }
    for (step, (me, mut deps)) in steps.iter_mut().zip(waits) {
        for d in &mut deps {
            if lead[*d] != usize::MAX {
                *d = lead[*d];
            }
        }
        deps.retain(|&d| d != me);
        deps.sort_unstable();
        deps.dedup();
        step.deps = deps.into_iter().map(|d| project.at(d).id.clone()).collect();
    }
    crate::phase::mark("steps: assembled");
    for (id, why) in unrunnable {
        let thresholds = gate::Thresholds::of(project.node(&id));
        let at = at(&id);
        steps.push(Step { id: id.clone(), at, statements: vec![], group: vec![(id, String::new(), thresholds)], deps: vec![], incremental: false, refused: Some(why), seed: None });
    }
    Ok(steps)
}

/// What a step runs, rendered for the audit location.
#[derive(Default)]
struct RenderedStep {
    statements: Vec<String>,
    group: Vec<(NodeId, String, gate::Thresholds)>,
    incremental: bool,
    seed: Option<(usize, crate::warehouse::SeedLoad)>,
}

fn render_step(input: &BuildInput, place: &crate::render::Placement, node: &crate::project::Node) -> Result<RenderedStep> {
    let BuildInput { compiler, staged, prod, full_refresh, .. } = input;
    let layout = compiler.layout;
    let dialect = layout.dialect;
    let id = &node.id;
    let mut out = RenderedStep::default();
    match node.kind {
        NodeKind::Seed => {
            let target = layout.audit_relation(node);
            out.statements = seed_statements(dialect, node, &target);
            let pre = with_hooks(compiler, node, place, &target, &mut out.statements)?;
            out.seed = Some((pre, crate::compile::seed_load(node, &target)));
        }
        NodeKind::Model => {
            let target = layout.audit_relation(node);
            let prod_schema = layout.prod_schema(node);
            let incremental = node.materialization == Materialization::Incremental
                && !crate::project::Project::full_refresh(node, *full_refresh)
                && prod.is_table(&prod_schema, &layout.ident(node));
            let sql = compiler
                .select_sql(node, place, Some(target.clone()), incremental)
                .with_context(|| format!("rendering model {}", node.name))?;
            // staged: the audit copy of prod is already there to build on
            let base = if staged.contains(id) { target.clone() } else { layout.prod_relation(node) };
            out.statements = model_statements(dialect, node, &target, &sql, incremental.then_some(&base));
            with_hooks(compiler, node, place, &target, &mut out.statements)?;
            out.incremental = incremental;
        }
        NodeKind::Test => {
            let sql = match node.test.as_ref().expect("test nodes carry a test") {
                TestKind::Generic { name, .. } if !crate::project::is_builtin_test(name) => compiler
                    .generic_macro_sql(node, place)
                    .with_context(|| format!("{}: test {}", node.path.display(), node.name))?,
                TestKind::Generic { name, column, args } => {
                    let owner = node.attached_to.as_ref().ok_or_else(|| anyhow!("test {} is attached to nothing", node.name))?;
                    let model = gate::where_subquery(&place(owner), node.config.where_.as_deref(), false);
                    let to = args.get("to_node").and_then(|v| v.as_str()).map(|t| place(t));
                    let args: serde_json::Map<String, serde_json::Value> = args.clone().into_iter().collect();
                    gate::generic_test_sql(dialect, name, column, &args, &model, to.as_ref())
                        .with_context(|| format!("{}: test {}", node.path.display(), node.name))?
                }
                TestKind::Singular { .. } => compiler.select_sql(node, place, None, false)?,
            };
            out.group = vec![(id.clone(), gate::with_limit(&sql, node.config.limit), gate::Thresholds::of(node))];
        }
        NodeKind::Source => {}
    }
    Ok(out)
}

/// pre-hooks before, post-hooks after the node's own statements, rendered for
/// the audit location (they never run in prod before the gate). Returns how
/// many pre-hooks come first.
fn with_hooks(compiler: &Compiler, node: &crate::project::Node, place: &crate::render::Placement, this: &crate::render::Relation, statements: &mut Vec<String>) -> Result<usize> {
    if node.config.pre_hook.is_empty() && node.config.post_hook.is_empty() {
        return Ok(0);
    }
    let origin = format!("{} (hook)", node.path.display());
    let render = |h: &String| compiler.hook_sql(&origin, h, place, Some(this.clone()));
    let pre = node.config.pre_hook.iter().map(render).collect::<Result<Vec<_>>>()?;
    let post = node.config.post_hook.iter().map(render).collect::<Result<Vec<_>>>()?;
    let own = std::mem::take(statements);
    let n = pre.len();
    *statements = pre.into_iter().chain(own).chain(post).collect();
    Ok(n)
}

/// The tests of a node run as one query: one round trip instead of one per
/// test, as the floor (B0) does. A test that also reads other relations
/// (relationships) joins it when none of them is downstream of the node:
/// the group then waits for all of them, and what reads the node waits for
/// the group, as it waited for each test before. A test reading something
/// built from the node keeps its own step (fused, it would wait for a
/// relation that waits for it).
///
/// `planned`: (node, the steps it waits for) in dependency order, by
/// position in the project. Returns, by position, the test leading each
/// fused test's group (the owner's first fusable test), `usize::MAX` for
/// the rest.
fn fused_tests(project: &crate::project::Project, planned: &[(usize, Vec<usize>)]) -> Vec<usize> {
    let n = project.nodes.len();
    // steps come in dependency order: a relation placed before the owner is never its descendant
    let mut position = vec![usize::MAX; n];
    for (k, (i, _)) in planned.iter().enumerate() {
        position[*i] = k;
    }
    let owner_of = |i: usize| {
        let node = project.at(i);
        (node.kind == NodeKind::Test).then_some(()).and(node.attached_to.as_deref()).and_then(|o| project.position(o))
    };
    let mut leader = vec![usize::MAX; n];
    let mut lead = vec![usize::MAX; n];
    for (i, deps) in planned {
        let Some(owner) = owner_of(*i) else { continue };
        if deps.contains(&owner) && deps.iter().filter(|&&d| d != owner).all(|&d| !reads_from(project, &position, d, owner)) {
            if leader[owner] == usize::MAX {
                leader[owner] = *i;
            }
            lead[*i] = leader[owner];
        }
    }
    lead
}

/// Whether `id` reads `ancestor`, directly or through what it reads (by
/// position in the project). `position`: the steps' dependency order, to
/// stop at relations placed before `ancestor` (they cannot read it).
fn reads_from(project: &crate::project::Project, position: &[usize], id: usize, ancestor: usize) -> bool {
    let floor = position[ancestor];
    if floor == usize::MAX {
        return true;
    }
    let mut stack = vec![id];
    let mut seen = HashSet::new();
    while let Some(k) = stack.pop() {
        if k == ancestor {
            return true;
        }
        if !seen.insert(k) || position[k] < floor {
            continue;
        }
        stack.extend(project.at(k).depends_on.iter().filter_map(|d| project.position(d)));
    }
    false
}

/// One query that counts the failing rows of every test in a group: one
/// row, one count per test, in the group's order.
pub fn group_query(group: &[(NodeId, String, gate::Thresholds)]) -> String {
    let counts = group
        .iter()
        .enumerate()
        .map(|(i, (_, sql, _))| format!("(SELECT COUNT(*) FROM (\n{sql}\n) AS airlock_t) AS airlock_n{i}"))
        .collect::<Vec<_>>()
        .join(",\n");
    format!("SELECT\n{counts}")
}

/// The relations a node reads, looking through ephemeral models.
pub fn upstream_relations(project: &crate::project::Project, id: &str) -> BTreeSet<NodeId> {
    let looked_through = |d: &NodeId| {
        let n = project.node(d);
        n.kind == NodeKind::Source || (n.kind == NodeKind::Model && n.materialization == Materialization::Ephemeral)
    };
    let deps = &project.node(id).depends_on;
    if !deps.iter().any(looked_through) {
        return deps.clone();
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<NodeId> = project.node(id).depends_on.iter().cloned().collect();
    let mut seen = BTreeSet::new();
    while let Some(dep) = stack.pop() {
        if !seen.insert(dep.clone()) {
            continue;
        }
        let n = project.node(&dep);
        if n.kind == NodeKind::Model && n.materialization == Materialization::Ephemeral {
            stack.extend(n.depends_on.iter().cloned());
        } else if n.kind != NodeKind::Source {
            out.insert(dep);
        }
    }
    out
}

/// Run the steps; returns one result per node, in completion order. Fails
/// closed: a step that panics reports an error for every node it carried (and
/// its dependants are skipped); once `stop` is set no new step starts.
pub async fn run_steps(
    warehouse: Arc<dyn Warehouse>,
    project: &crate::project::Project,
    steps: Vec<Step>,
    threads: usize,
    progress: &Progress,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<StepResult> {
    let threads = threads.max(1);
    let mut waiting: HashMap<NodeId, usize> = HashMap::new();
    let mut children: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    let mut by_id: HashMap<NodeId, Step> = HashMap::new();
    let mut ready: Vec<NodeId> = Vec::new();
    for step in steps {
        waiting.insert(step.id.clone(), step.deps.len());
        for d in &step.deps {
            children.entry(d.clone()).or_default().push(step.id.clone());
        }
        if step.deps.is_empty() {
            ready.push(step.id.clone());
        }
        by_id.insert(step.id.clone(), step);
    }
    ready.sort_by(|a, b| b.cmp(a)); // pop() takes the smallest id first: a stable order
    let mut results: HashMap<NodeId, StepResult> = HashMap::new();
    let mut running: JoinSet<(StepResult, Vec<StepResult>)> = JoinSet::new();
    // what each running task carries, to report it if the task dies
    let mut in_flight: HashMap<tokio::task::Id, (NodeId, Vec<NodeId>, Instant)> = HashMap::new();
    // one result per node (a group of tests reports each test)
    let mut reported: Vec<StepResult> = Vec::new();
    // a group of tests that failed: the member that failed it, named to the steps it skips
    let mut culprit: HashMap<NodeId, NodeId> = HashMap::new();

    loop {
        while running.len() < threads && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Some(id) = ready.pop() else { break };
            let step = by_id.remove(&id).expect("each step runs once");
            // a dependency failed: skip instead of running
            if let Some(bad) = step.deps.iter().find(|d| results.get(*d).is_some_and(StepResult::bad)) {
                let because = project.node(culprit.get(bad).unwrap_or(bad)).name.clone();
                for (member, _, _) in step.group.iter().filter(|(m, _, _)| m != &id) {
                    reported.push(StepResult { id: member.clone(), outcome: Outcome::Skipped { because: because.clone() }, micros: 0, rows: None });
                    progress.step_done(&project.node(member).name, "skipped");
                }
                let r = StepResult { id: id.clone(), outcome: Outcome::Skipped { because }, micros: 0, rows: None };
                progress.step_done(&project.node(&id).name, "skipped");
                reported.push(r.clone());
                complete(r, &mut results, &children, &mut waiting, &mut ready);
                continue;
            }
            progress.step_started(&project.node(&id).name);
            let wh = warehouse.clone();
            let thresholds = gate::Thresholds::of(project.node(&id));
            let members: Vec<NodeId> = if step.group.is_empty() { vec![id.clone()] } else { step.group.iter().map(|(m, _, _)| m.clone()).collect() };
            let names: Vec<String> = members.iter().map(|m| project.node(m).name.clone()).collect();
            let handle = running.spawn(async move {
                let t = Instant::now();
                for name in &names {
                    crate::failpoint::maybe_panic(name);
                }
                let (members, rows) = run_one(&*wh, &step, thresholds).await;
                let micros = t.elapsed().as_micros() as u64;
                let members: Vec<StepResult> = members.into_iter().map(|(id, outcome)| StepResult { id, outcome, micros, rows }).collect();
                // the step fails its dependents when any of its tests blocks
                let worst = members.iter().find(|m| m.bad()).map(|m| m.outcome.clone()).unwrap_or(Outcome::Built);
                (StepResult { id: step.id, outcome: worst, micros, rows }, members)
            });
            in_flight.insert(handle.id(), (id, members, Instant::now()));
        }
        let Some(joined) = running.join_next_with_id().await else { break };
        let (r, members) = match joined {
            Ok((task, r)) => {
                in_flight.remove(&task);
                r
            }
            Err(e) => {
                // a step that died (a bug, or a panic in a dependency) gave no
                // result: every node it carried is an error, never a pass
                let (id, carried, started) = in_flight.remove(&e.id()).expect("every task is in flight");
                let why = if e.is_panic() { panic_message(e.into_panic()) } else { "cancelled".to_string() };
                let outcome = Outcome::Error { message: format!("step stopped without a result: {why}") };
                let micros = started.elapsed().as_micros() as u64;
                let members = carried.iter().map(|m| StepResult { id: m.clone(), outcome: outcome.clone(), micros, rows: None }).collect();
                (StepResult { id, outcome, micros, rows: None }, members)
            }
        };
        for m in &members {
            let label = match &m.outcome {
                Outcome::Built => "built",
                Outcome::Pass => "pass",
                Outcome::Warn { .. } => "warn",
                Outcome::Fail { .. } => "FAIL",
                Outcome::Error { .. } => "ERROR",
                Outcome::Skipped { .. } => "skipped",
            };
            progress.step_done(&project.node(&m.id).name, label);
        }
        if let Some(m) = members.iter().find(|m| m.bad()).filter(|m| m.id != r.id) {
            culprit.insert(r.id.clone(), m.id.clone());
        }
        reported.extend(members);
        complete(r, &mut results, &children, &mut waiting, &mut ready);
    }
    reported
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

fn complete(
    r: StepResult,
    results: &mut HashMap<NodeId, StepResult>,
    children: &HashMap<NodeId, Vec<NodeId>>,
    waiting: &mut HashMap<NodeId, usize>,
    ready: &mut Vec<NodeId>,
) {
    let id = r.id.clone();
    results.insert(id.clone(), r);
    let mut newly = Vec::new();
    for c in children.get(&id).into_iter().flatten() {
        let n = waiting.get_mut(c).expect("child is a step");
        *n -= 1;
        if *n == 0 {
            newly.push(c.clone());
        }
    }
    ready.extend(newly);
    ready.sort_by(|a, b| b.cmp(a));
}

async fn run_one(wh: &dyn Warehouse, step: &Step, thresholds: gate::Thresholds) -> (Vec<(NodeId, Outcome)>, Option<u64>) {
    if let Some(why) = &step.refused {
        return (step.group.iter().map(|(id, _, _)| (id.clone(), Outcome::Error { message: why.clone() })).collect(), None);
    }
    if step.group.is_empty() {
        return build_one(wh, step).await;
    }
    (run_tests(wh, step, thresholds).await, None)
}

/// A model or seed: its statements (one transaction where there are
/// several); a seed is loaded by the warehouse between its hooks.
async fn build_one(wh: &dyn Warehouse, step: &Step) -> (Vec<(NodeId, Outcome)>, Option<u64>) {
    let result = match (&step.seed, step.statements.len()) {
        (Some((at, seed)), _) => async {
            for hook in &step.statements[..*at] {
                wh.execute(hook).await?;
            }
            let rows = wh.load_seed(seed).await?;
            for hook in &step.statements[at + 1..] {
                wh.execute(hook).await?;
            }
            Ok(rows)
        }
        .await,
        (None, 0) => Ok(None),
        (None, 1) => wh.execute_counted(&step.statements[0]).await,
        (None, _) => wh.execute_atomic(&step.statements).await.map(|()| None),
    };
    match result {
        Ok(rows) => (vec![(step.id.clone(), Outcome::Built)], rows),
        Err(e) => (vec![(step.id.clone(), Outcome::Error { message: format!("{e:#}") })], None),
    }
}

async fn run_tests(wh: &dyn Warehouse, step: &Step, thresholds: gate::Thresholds) -> Vec<(NodeId, Outcome)> {
    if step.group.len() > 1 {
        return match wh.query(&group_query(&step.group)).await {
            Ok(rows) => {
                // exactly one row, one count per test: anything else is no verdict
                let row = match rows.rows.as_slice() {
                    [row] if row.len() == step.group.len() => Some(row),
                    _ => None,
                };
                let mut out = Vec::with_capacity(step.group.len());
                for (i, (id, sql, warn)) in step.group.iter().enumerate() {
                    let cell = row.and_then(|r| r[i].clone());
                    let outcome = match parse_count(id, Some(cell)) {
                        Ok(n) if warn.verdict(n) == gate::Verdict::Pass => Outcome::Pass,
                        Ok(_) => test_outcome(wh, id, &gate::gate_query(sql), *warn).await,
                        Err(message) => Outcome::Error { message },
                    };
                    out.push((id.clone(), outcome));
                }
                out
            }
            // one of them is broken: run each alone to say which
            Err(_) => {
                let mut out = Vec::with_capacity(step.group.len());
                for (id, sql, warn) in &step.group {
                    out.push((id.clone(), test_outcome(wh, id, &gate::gate_query(sql), *warn).await));
                }
                out
            }
        };
    }
    let (id, sql, _) = &step.group[0];
    vec![(id.clone(), test_outcome(wh, id, &gate::gate_query(sql), thresholds).await)]
}

/// A failure count as the warehouse returned it: `None` when the query gave
/// no row at all (no failing rows), `Some(None)` for a missing value.
/// Anything but a number is no verdict (never a pass).
fn parse_count(test: &str, cell: Option<Option<String>>) -> Result<u64, String> {
    let garbled = crate::failpoint::is_set(&crate::failpoint::Point::Garble(test.rsplit('.').next().unwrap_or(test).to_string()));
    let cell = if garbled { Some(Some("n/a".to_string())) } else { cell };
    match cell {
        None => Ok(0),
        Some(Some(text)) => text.trim().parse().map_err(|_| format!("the failure count '{text}' returned by the warehouse is not a number: no verdict")),
        Some(None) => Err("the warehouse returned no failure count for this test: no verdict".to_string()),
    }
}

async fn test_outcome(wh: &dyn Warehouse, id: &str, query: &str, thresholds: gate::Thresholds) -> Outcome {
    match wh.query(query).await {
        Ok(rows) => {
            // no rows: no failing rows; otherwise the first cell is the count
            let failures = parse_count(id, rows.rows.first().map(|r| r.first().cloned().flatten()));
            let (_, sample) = gate::read_result(rows);
            match failures.map(|n| (n, thresholds.verdict(n))) {
                Err(message) => Outcome::Error { message },
                Ok((_, gate::Verdict::Pass)) => Outcome::Pass,
                Ok((failures, gate::Verdict::Warn)) => Outcome::Warn { failures, sample },
                Ok((failures, gate::Verdict::Fail)) => Outcome::Fail { failures, sample },
            }
        }
        Err(e) => Outcome::Error { message: format!("{e:#}") },
    }
}

/// Summary counts of a build.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Counts {
    pub built: usize,
    pub tests: usize,
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    /// models and seeds that failed to build
    pub errors: usize,
    /// tests that gave no verdict (errored, panicked, could not run): they block
    pub no_verdict: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(results: &[StepResult], project: &crate::project::Project) -> Counts {
        let mut c = Counts::default();
        for r in results {
            let is_test = project.node(&r.id).kind == NodeKind::Test;
            if is_test {
                c.tests += 1;
            }
            match r.outcome {
                Outcome::Built => c.built += 1,
                Outcome::Pass => c.passed += 1,
                Outcome::Warn { .. } => c.warned += 1,
                Outcome::Fail { .. } => c.failed += 1,
                Outcome::Error { .. } if is_test => c.no_verdict += 1,
                Outcome::Error { .. } => c.errors += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::Dialect;

    fn entry(schema: &str, name: &str) -> CatalogEntry {
        CatalogEntry { schema: schema.into(), name: name.into(), kind: ObjectKind::Table, view_ddl: None, rows: None }
    }

    #[test]
    fn catalog_lookups_compare_names_as_the_warehouse_does() {
        let duck = Catalog::new(Dialect::DuckDb, vec![entry("Main", "Orders")]);
        assert!(duck.is_table("main", "orders"));
        let snow = Catalog::new(Dialect::Snowflake, vec![entry("MAIN", "ORDERS")]);
        assert!(snow.is_table("MAIN", "ORDERS"));
        assert!(!snow.is_table("main", "orders"), "quoted Snowflake names are exact");
    }
}
