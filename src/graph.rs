//! The project as a petgraph DAG: cycle errors that name the whole cycle,
//! dbt-style selection (`name`, `tag:x`, `path:dir`, `source:s.t`, `+name`,
//! `name+`, `2+name`, intersections with `,`) and topological order.

use std::collections::{BTreeSet, HashMap, VecDeque};

use anyhow::{bail, Result};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::project::{NodeId, NodeKind, Project};

pub struct Dag {
    graph: DiGraph<NodeId, ()>,
    index: HashMap<NodeId, NodeIndex, foldhash::fast::RandomState>,
    /// parents before children, ties by depth then id: computed once
    order: Vec<NodeId>,
    /// the same as positions in the project (nodes are added in project
    /// order, so a node's index is its position)
    order_at: Vec<usize>,
}

impl Dag {
    /// Edges run from a node to the nodes that depend on it.
    pub fn new(project: &Project) -> Result<Dag> {
        let mut graph = DiGraph::with_capacity(project.nodes.len(), project.nodes.len() * 2);
        let mut index = HashMap::with_capacity_and_hasher(project.nodes.len(), Default::default());
        for id in project.nodes.keys() {
            index.insert(id.clone(), graph.add_node(id.clone()));
        }
        for node in project.nodes.values() {
            for dep in &node.depends_on {
                if let Some(&from) = index.get(dep) {
                    graph.add_edge(from, index[&node.id], ());
                }
            }
        }
        let mut dag = Dag { graph, index, order: Vec::new(), order_at: Vec::new() };
        if let Some(cycle) = dag.find_cycle() {
            let described: Vec<String> = cycle
                .iter()
                .map(|id| {
                    let n = project.node(id);
                    format!("{} ({})", n.name, n.path.display())
                })
                .collect();
            bail!("dependency cycle: {}", described.join(" -> "));
        }
        dag.order_at = dag.stable_topo_order();
        dag.order = dag.order_at.iter().map(|&i| dag.graph[NodeIndex::new(i)].clone()).collect();
        Ok(dag)
    }

    /// The cycle as a closed path (first node repeated at the end).
    fn find_cycle(&self) -> Option<Vec<NodeId>> {
        for scc in tarjan_scc(&self.graph) {
            if scc.len() == 1 && !self.graph.contains_edge(scc[0], scc[0]) {
                continue;
            }
            let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
            let start = *members.iter().min_by_key(|i| &self.graph[**i])?;
            let self_loop = self.graph.contains_edge(start, start);
            if self_loop {
                return Some(vec![self.graph[start].clone(), self.graph[start].clone()]);
            }
            // breadth-first from start back to start inside the component: the shortest cycle through it
            let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
            let mut queue = VecDeque::from([start]);
            while let Some(at) = queue.pop_front() {
                let mut next: Vec<NodeIndex> = self.graph.neighbors_directed(at, Direction::Outgoing).filter(|n| members.contains(n)).collect();
                next.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
                for n in next {
                    if n == start {
                        let mut path = vec![self.graph[start].clone()];
                        let mut cur = at;
                        let mut back = vec![];
                        while cur != start {
                            back.push(self.graph[cur].clone());
                            cur = prev[&cur];
                        }
                        back.reverse();
                        path.extend(back);
                        path.push(self.graph[start].clone());
                        return Some(path);
                    }
                    if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(n) {
                        e.insert(at);
                        queue.push_back(n);
                    }
                }
            }
        }
        None
    }

    /// Every node, parents before children (ties broken by depth, then id).
    pub fn topo_order(&self) -> &[NodeId] {
        &self.order
    }

    /// [`Dag::topo_order`] as positions in the project ([`Project::at`]).
    pub fn topo_positions(&self) -> &[usize] {
        &self.order_at
    }

    fn stable_topo_order(&self) -> Vec<usize> {
        let order = toposort(&self.graph, None).expect("cycles are rejected in Dag::new");
        // toposort's order among independent nodes depends on insertion; make it stable
        let mut depth = vec![0usize; self.graph.node_count()];
        for &i in &order {
            depth[i.index()] = self.graph.neighbors_directed(i, Direction::Incoming).map(|p| depth[p.index()] + 1).max().unwrap_or(0);
        }
        // nodes were added in id order, so their indices sort as their ids do
        let mut ids: Vec<(usize, NodeIndex)> = order.iter().map(|i| (depth[i.index()], *i)).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, i)| i.index()).collect()
    }

    pub fn parents(&self, id: &str) -> Vec<NodeId> {
        self.neighbors(id, Direction::Incoming)
    }

    pub fn children(&self, id: &str) -> Vec<NodeId> {
        self.neighbors(id, Direction::Outgoing)
    }

    fn neighbors(&self, id: &str, dir: Direction) -> Vec<NodeId> {
        let Some(&i) = self.index.get(id) else { return vec![] };
        let mut v: Vec<NodeId> = self.graph.neighbors_directed(i, dir).map(|n| self.graph[n].clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Nodes reachable from `id` in `dir`, up to `depth` steps (None = all).
    pub fn reach(&self, id: &str, dir: Direction, depth: Option<usize>) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        let Some(&start) = self.index.get(id) else { return out };
        let mut queue = VecDeque::from([(start, 0usize)]);
        let mut seen = BTreeSet::from([start]);
        while let Some((at, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for n in self.graph.neighbors_directed(at, dir) {
                if seen.insert(n) {
                    out.insert(self.graph[n].clone());
                    queue.push_back((n, d + 1));
                }
            }
        }
        out
    }

    pub fn descendants(&self, id: &str) -> BTreeSet<NodeId> {
        self.reach(id, Direction::Outgoing, None)
    }

    /// Select nodes with dbt's syntax. Empty `select` means everything. Tests
    /// come along with any node they test ("eager" indirect selection).
    pub fn select(&self, project: &Project, select: &[String], exclude: &[String]) -> Result<BTreeSet<NodeId>> {
        let mut chosen: BTreeSet<NodeId> = if select.iter().all(|s| s.trim().is_empty()) {
            project.nodes.keys().cloned().collect()
        } else {
            self.union(project, select, "--select")?
        };
        if exclude.iter().any(|s| !s.trim().is_empty()) {
            let excluded = self.union(project, exclude, "--exclude")?;
            chosen.retain(|id| !excluded.contains(id));
        }
        if chosen.len() == project.nodes.len() {
            return Ok(chosen); // everything, tests included (the usual deploy)
        }
        // tests of selected nodes, unless excluded
        let excluded_tests: BTreeSet<NodeId> = if exclude.is_empty() { BTreeSet::new() } else { self.union(project, exclude, "--exclude").unwrap_or_default() };
        for node in project.nodes.values().filter(|n| n.kind == NodeKind::Test) {
            if excluded_tests.contains(&node.id) {
                continue;
            }
            if node.depends_on.iter().any(|d| chosen.contains(d)) {
                chosen.insert(node.id.clone());
            }
        }
        Ok(chosen)
    }

    fn union(&self, project: &Project, specs: &[String], flag: &str) -> Result<BTreeSet<NodeId>> {
        let mut out = BTreeSet::new();
        for spec in specs.iter().flat_map(|s| s.split_whitespace()) {
            let mut inter: Option<BTreeSet<NodeId>> = None;
            for atom in spec.split(',').filter(|a| !a.is_empty()) {
                let got = self.atom(project, atom, flag)?;
                inter = Some(match inter {
                    None => got,
                    Some(prev) => prev.intersection(&got).cloned().collect(),
                });
            }
            out.extend(inter.unwrap_or_default());
        }
        Ok(out)
    }

    fn atom(&self, project: &Project, atom: &str, flag: &str) -> Result<BTreeSet<NodeId>> {
        let (up, rest) = graph_operator_prefix(atom);
        let (core, down) = graph_operator_suffix(rest);
        if core.is_empty() {
            bail!("{flag} '{atom}': nothing to select");
        }
        let base = self.method(project, core, flag)?;
        let mut out = base.clone();
        for id in &base {
            if let Some(depth) = up {
                out.extend(self.reach(id, Direction::Incoming, depth));
            }
            if let Some(depth) = down {
                out.extend(self.reach(id, Direction::Outgoing, depth));
            }
        }
        Ok(out)
    }

    fn method(&self, project: &Project, core: &str, flag: &str) -> Result<BTreeSet<NodeId>> {
        let (method, value) = match core.split_once(':') {
            Some((m, v)) => (m, v),
            None if core.contains('/') || core.ends_with(".sql") || core.ends_with(".csv") => ("path", core),
            None => ("fqn", core),
        };
        let nodes = project.nodes.values().filter(|n| n.kind != NodeKind::Test || method == "test_name" || method == "fqn");
        let hits: BTreeSet<NodeId> = match method {
            "tag" => nodes.filter(|n| n.config.tags.contains(value)).map(|n| n.id.clone()).collect(),
            "path" => {
                let want = value.trim_end_matches('/');
                nodes
                    .filter(|n| {
                        let p = n.path.to_string_lossy();
                        p == want || p.starts_with(&format!("{want}/"))
                    })
                    .map(|n| n.id.clone())
                    .collect()
            }
            "source" => nodes
                .filter(|n| n.kind == NodeKind::Source && (n.name == value || n.name.split('.').next() == Some(value)))
                .map(|n| n.id.clone())
                .collect(),
            "resource_type" => nodes.filter(|n| n.kind.as_str() == value).map(|n| n.id.clone()).collect(),
            "config.materialized" => nodes
                .filter(|n| n.is_relation() || n.kind == NodeKind::Model)
                .filter(|n| n.materialization.as_str() == value)
                .map(|n| n.id.clone())
                .collect(),
            "fqn" | "test_name" => {
                let parts: Vec<&str> = value.split('.').collect();
                nodes
                    .filter(|n| n.kind != NodeKind::Source)
                    .filter(|n| {
                        n.name == value
                            || wildcard(value, &n.name)
                            || (n.kind != NodeKind::Test && fqn_matches(&n.fqn, &parts))
                    })
                    .map(|n| n.id.clone())
                    .collect()
            }
            other => bail!("{flag}: unknown selector method '{other}:' (airlock knows tag:, path:, source:, resource_type:, config.materialized:)"),
        };
        if hits.is_empty() {
            let candidates: Vec<String> = match method {
                "tag" => project.nodes.values().flat_map(|n| n.config.tags.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect(),
                "source" => project.nodes.values().filter(|n| n.kind == NodeKind::Source).map(|n| n.name.clone()).collect(),
                _ => project.nodes.values().filter(|n| n.kind != NodeKind::Test).map(|n| n.name.clone()).collect(),
            };
            let hint = crate::suggest::hint(value, candidates.iter().map(String::as_str));
            bail!("{flag} '{core}' matches no node{hint}");
        }
        Ok(hits)
    }
}

/// `+x` -> all ancestors, `2+x` -> two levels, none -> None.
fn graph_operator_prefix(atom: &str) -> (Option<Option<usize>>, &str) {
    let digits: String = atom.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &atom[digits.len()..];
    match rest.strip_prefix('+') {
        Some(r) => (Some(digits.parse().ok()), r),
        None => (None, atom),
    }
}

fn graph_operator_suffix(atom: &str) -> (&str, Option<Option<usize>>) {
    let digits: String = atom.chars().rev().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &atom[..atom.len() - digits.len()];
    match rest.strip_suffix('+') {
        Some(r) => {
            let depth: String = digits.chars().rev().collect();
            (r, Some(depth.parse().ok()))
        }
        None => (atom, None),
    }
}

fn wildcard(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match name[pos..].find(part) {
            Some(found) if i > 0 || found == 0 => pos += found + part.len(),
            _ => return false,
        }
    }
    parts.last().is_some_and(|l| l.is_empty()) || pos == name.len()
}

/// `marts` matches `[shop, marts, orders]`; so does `shop.marts` and `marts.orders`.
fn fqn_matches(fqn: &[String], parts: &[&str]) -> bool {
    if parts.is_empty() {
        return false;
    }
    let tail = &fqn[1..];
    let starts = |seq: &[String]| seq.len() >= parts.len() && seq.iter().zip(parts).all(|(a, b)| a == b);
    starts(fqn) || starts(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_parse() {
        assert_eq!(graph_operator_prefix("+orders"), (Some(None), "orders"));
        assert_eq!(graph_operator_prefix("2+orders"), (Some(Some(2)), "orders"));
        assert_eq!(graph_operator_suffix("orders+"), ("orders", Some(None)));
        assert_eq!(graph_operator_suffix("orders+1"), ("orders", Some(Some(1))));
        assert_eq!(graph_operator_suffix("tag:mart"), ("tag:mart", None));
    }

    #[test]
    fn wildcards_and_fqn() {
        assert!(wildcard("stg_*", "stg_orders"));
        assert!(!wildcard("stg_*", "orders"));
        let fqn = vec!["shop".to_string(), "marts".to_string(), "orders".to_string()];
        assert!(fqn_matches(&fqn, &["marts"]));
        assert!(fqn_matches(&fqn, &["shop", "marts"]));
        assert!(!fqn_matches(&fqn, &["staging"]));
    }
}
