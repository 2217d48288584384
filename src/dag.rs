//! The step graph of one pipeline: which step must finish before which, and why.

use std::collections::{HashMap, VecDeque};

use foldhash::{HashMapExt as _, HashSetExt as _};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

/// Why one step runs after another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EdgeReason {
    /// Listed in `needs`.
    Needs,
    /// A template reads `steps.FROM.outputs.NAME`.
    Template(String),
    /// A `deps` path is (or is inside, or contains) an output of the earlier step.
    Deps(String),
    /// A template reads `steps.GROUP.members`, which the earlier step is one of.
    Members,
}

impl EdgeReason {
    /// Short text for graph labels and `--why` output.
    pub fn describe(&self) -> String {
        match self {
            EdgeReason::Needs => "needs".to_string(),
            EdgeReason::Template(output) => format!("reads outputs.{output}"),
            EdgeReason::Deps(path) => format!("deps {path}"),
            EdgeReason::Members => "reads members".to_string(),
        }
    }
}

/// A directed graph from each step to the steps that depend on it.
#[derive(Debug, Clone, Default)]
pub struct Dag {
    graph: DiGraph<String, EdgeReason>,
    index: foldhash::HashMap<String, NodeIndex>,
    /// The pairs with an edge: `find_edge` walks a node's edge list, and a
    /// step 1,000 others read from would make building the graph quadratic.
    pairs: foldhash::HashSet<(NodeIndex, NodeIndex)>,
}

impl Dag {
    /// A graph of these steps, in this order, with no edges yet.
    pub fn new<'a, I>(steps: I) -> Dag
    where
        I: IntoIterator<Item = &'a str, IntoIter: ExactSizeIterator>,
    {
        let steps = steps.into_iter();
        let mut dag = Dag {
            graph: DiGraph::with_capacity(steps.len(), steps.len()),
            index: foldhash::HashMap::with_capacity(steps.len()),
            pairs: foldhash::HashSet::with_capacity(steps.len()),
        };
        for step in steps {
            let node = dag.graph.add_node(step.to_string());
            dag.index.insert(step.to_string(), node);
        }
        dag
    }

    /// Records that `after` runs after `before`. The first reason given for a
    /// pair is kept; unknown step names are ignored (validation reports them).
    pub fn add_edge(&mut self, before: &str, after: &str, reason: EdgeReason) {
        let (Some(&from), Some(&to)) = (self.index.get(before), self.index.get(after)) else {
            return;
        };
        self.add(from, to, reason);
    }

    /// Room for `edges` more edges, made at once: a graph read back knows
    /// how many it gets, and growing the lists by doubling claims memory
    /// at each size.
    pub fn reserve_edges(&mut self, edges: usize) {
        self.graph.reserve_edges(edges);
        self.pairs.reserve(edges);
    }

    /// `add_edge` by the steps' positions, as `edge_positions` gives them:
    /// a saved graph is read back without looking names up.
    pub fn add_edge_at(&mut self, before: usize, after: usize, reason: EdgeReason) {
        let count = self.graph.node_count();
        if before < count && after < count {
            self.add(NodeIndex::new(before), NodeIndex::new(after), reason);
        }
    }

    fn add(&mut self, from: NodeIndex, to: NodeIndex, reason: EdgeReason) {
        if self.pairs.insert((from, to)) {
            self.graph.add_edge(from, to, reason);
        }
    }

    /// Every edge by the positions of its steps in the order `new` got
    /// them, in the order the edges were added.
    pub fn edge_positions(&self) -> Vec<(usize, usize, &EdgeReason)> {
        self.graph
            .edge_references()
            .map(|e| (e.source().index(), e.target().index(), e.weight()))
            .collect()
    }

    /// Every edge, in the order they were added.
    #[cfg(test)]
    pub fn edges(&self) -> Vec<(&str, &str, &EdgeReason)> {
        self.graph
            .edge_references()
            .map(|e| {
                (
                    self.graph[e.source()].as_str(),
                    self.graph[e.target()].as_str(),
                    e.weight(),
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// The steps `step` directly depends on, with the reason, in declaration order.
    pub fn upstream(&self, step: &str) -> Vec<(&str, &EdgeReason)> {
        let Some(&node) = self.index.get(step) else {
            return Vec::new();
        };
        let mut up: Vec<_> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| (e.source(), e.weight()))
            .collect();
        up.sort_by_key(|(n, _)| *n);
        up.into_iter()
            .map(|(n, reason)| (self.graph[n].as_str(), reason))
            .collect()
    }

    /// The positions (as `new` got them) of the steps the step at `position`
    /// directly depends on, in declaration order.
    pub fn upstream_positions(&self, position: usize) -> Vec<usize> {
        if position >= self.graph.node_count() {
            return Vec::new();
        }
        let mut up: Vec<usize> = self
            .graph
            .neighbors_directed(NodeIndex::new(position), Direction::Incoming)
            .map(|n| n.index())
            .collect();
        up.sort_unstable();
        up
    }

    /// Every cycle, one per strongly connected component, as a path that
    /// returns to its start: `["train", "evaluate", "train"]`.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut cycles = Vec::new();
        for mut component in tarjan_scc(&self.graph) {
            component.sort();
            let start = component[0];
            let self_loop = self.graph.find_edge(start, start).is_some();
            if component.len() == 1 && !self_loop {
                continue;
            }
            if self_loop {
                let name = self.graph[start].clone();
                cycles.push(vec![name.clone(), name]);
                continue;
            }
            cycles.push(self.cycle_through(start, &component));
        }
        cycles.sort();
        cycles
    }

    /// A shortest path from `start` back to itself inside one component.
    fn cycle_through(&self, start: NodeIndex, component: &[NodeIndex]) -> Vec<String> {
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for next in self.graph.neighbors_directed(node, Direction::Outgoing) {
                if next == start {
                    let mut path = vec![node];
                    let mut at = node;
                    while at != start {
                        at = parent[&at];
                        path.push(at);
                    }
                    path.reverse();
                    path.push(start);
                    return path.into_iter().map(|n| self.graph[n].clone()).collect();
                }
                if component.binary_search(&next).is_ok() && !parent.contains_key(&next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        vec![self.graph[start].clone()]
    }

    /// Steps grouped by depth: a step's layer is one more than its deepest
    /// dependency, so every layer can run in parallel. Only for acyclic graphs.
    pub fn layers(&self) -> Vec<Vec<&str>> {
        let mut depth: Vec<usize> = vec![0; self.graph.node_count()];
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|n| self.graph.edges_directed(n, Direction::Incoming).count())
            .collect();
        let mut ready: VecDeque<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .collect();
        let mut layers: Vec<Vec<NodeIndex>> = Vec::new();
        while let Some(node) = ready.pop_front() {
            let d = depth[node.index()];
            if layers.len() <= d {
                layers.resize_with(d + 1, Vec::new);
            }
            layers[d].push(node);
            for next in self.graph.neighbors_directed(node, Direction::Outgoing) {
                depth[next.index()] = depth[next.index()].max(d + 1);
                indegree[next.index()] -= 1;
                if indegree[next.index()] == 0 {
                    ready.push_back(next);
                }
            }
        }
        layers
            .into_iter()
            .map(|mut layer| {
                layer.sort();
                layer.into_iter().map(|n| self.graph[n].as_str()).collect()
            })
            .collect()
    }

    /// Plain text: steps in run order, each with what it waits for.
    pub fn render_text(&self, title: &str) -> String {
        let layers = self.layers();
        let width = self
            .graph
            .node_weights()
            .map(String::len)
            .max()
            .unwrap_or(0);
        let count = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let mut out = format!(
            "{title}: {}, {}, {}\n",
            count(self.len(), "step"),
            count(self.edge_count(), "edge"),
            count(layers.len(), "stage")
        );
        for (i, layer) in layers.iter().enumerate() {
            let _ = writeln!(out, "  stage {}:", i + 1);
            for step in layer {
                let up = self.upstream(step);
                if up.is_empty() {
                    let _ = writeln!(out, "    {step}");
                } else {
                    let names: Vec<&str> = up.iter().map(|(n, _)| *n).collect();
                    let _ = writeln!(out, "    {step:width$}  <- {}", names.join(", "));
                }
            }
        }
        out
    }

    /// Graphviz: `runner graph --format dot | dot -Tsvg > dag.svg`.
    pub fn render_dot(&self, title: &str) -> String {
        let mut out = format!(
            "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
            quote_dot(title)
        );
        for node in self.graph.node_indices() {
            let _ = writeln!(out, "  {};", quote_dot(&self.graph[node]));
        }
        for edge in self.graph.edge_references() {
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                quote_dot(&self.graph[edge.source()]),
                quote_dot(&self.graph[edge.target()]),
                quote_dot(&edge.weight().describe())
            );
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid, which GitHub and GitLab render inside Markdown. Nodes get
    /// neutral ids (`s0["train"]`): a step called `end` would end the chart.
    pub fn render_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for node in self.graph.node_indices() {
            let _ = writeln!(out, "  s{}[\"{}\"]", node.index(), self.graph[node]);
        }
        for edge in self.graph.edge_references() {
            let _ = writeln!(
                out,
                "  s{} --> s{}",
                edge.source().index(),
                edge.target().index()
            );
        }
        out
    }
}

fn quote_dot(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Dag {
        let mut dag = Dag::new(["ingest", "clean", "train", "evaluate"]);
        dag.add_edge("ingest", "clean", EdgeReason::Template("raw".into()));
        dag.add_edge("clean", "train", EdgeReason::Needs);
        dag.add_edge(
            "train",
            "evaluate",
            EdgeReason::Deps("build/model.json".into()),
        );
        dag.add_edge("clean", "evaluate", EdgeReason::Needs);
        dag
    }

    #[test]
    fn layers_follow_the_longest_path() {
        assert_eq!(
            chain().layers(),
            vec![
                vec!["ingest"],
                vec!["clean"],
                vec!["train"],
                vec!["evaluate"]
            ]
        );
    }

    #[test]
    fn cycles_are_printed_as_paths() {
        let mut dag = chain();
        dag.add_edge("evaluate", "train", EdgeReason::Needs);
        assert_eq!(dag.cycles(), vec![vec!["train", "evaluate", "train"]]);
        let mut dag = Dag::new(["a"]);
        dag.add_edge("a", "a", EdgeReason::Needs);
        assert_eq!(dag.cycles(), vec![vec!["a", "a"]]);
        assert!(chain().cycles().is_empty());
    }

    #[test]
    fn renderings_name_every_edge() {
        let dag = chain();
        let dot = dag.render_dot("p");
        assert!(
            dot.contains("\"ingest\" -> \"clean\" [label=\"reads outputs.raw\"]"),
            "{dot}"
        );
        let mermaid = dag.render_mermaid();
        assert!(
            mermaid.contains("  s2[\"train\"]") && mermaid.contains("  s2 --> s3"),
            "{mermaid}"
        );
        let text = dag.render_text("p");
        assert!(text.contains("evaluate  <- clean, train"), "{text}");
    }
}
