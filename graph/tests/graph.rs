//! Task graphs through the public API.

use bob_pipelines_estimator::{Batch, BoxError, Fit, Pipeline, SampleResult, Step, Transformer};
use bob_pipelines_graph::{TaskGraph, TaskKind};
use bob_pipelines_sample::Sample;
use serde::{Deserialize, Serialize};

struct Id;
impl Transformer for Id {
    type Input = u8;
    type Output = u8;
    fn transform(&self, b: &Batch<'_, u8>) -> Result<Vec<SampleResult<u8>>, BoxError> {
        Ok(b.iter().map(|x| Ok(*x)).collect())
    }
}

struct Learn;
#[derive(Serialize, Deserialize)]
struct Learned;
impl Fit for Learn {
    type Input = u8;
    type Fitted = Learned;
    fn fit(&self, _: &Batch<'_, u8>) -> Result<Learned, BoxError> {
        Ok(Learned)
    }
}
impl Transformer for Learned {
    type Input = u8;
    type Output = u8;
    fn transform(&self, b: &Batch<'_, u8>) -> Result<Vec<SampleResult<u8>>, BoxError> {
        Ok(b.iter().map(|x| Ok(*x)).collect())
    }
}

fn samples(n: u8) -> impl ExactSizeIterator<Item = Sample<u8>> + Send {
    (0..n).map(|i| Sample::new(i.to_string(), i))
}

fn seed_like() -> Pipeline<u8, u8> {
    Pipeline::new()
        .then(Step::new(Id).name("a"))
        .then(Step::fit(Learn).name("b").fit_tag("q_short_gpu"))
}

fn ids(g: &TaskGraph, of: &[usize]) -> Vec<String> {
    of.iter().map(|&i| g.task(i).id().to_owned()).collect()
}

#[test]
fn fit_transform_graph_has_loads_transforms_and_one_gathering_fit() {
    let mut p = seed_like();
    let g = TaskGraph::new(p.fit_transform(samples(9)).npartitions(3).info().unwrap());
    let all: Vec<&str> = g.tasks().iter().map(|t| t.id()).collect();
    assert_eq!(
        all,
        [
            "load-0",
            "load-1",
            "load-2",
            "a.transform-0",
            "a.transform-1",
            "a.transform-2",
            "b.fit",
            "b.transform-0",
            "b.transform-1",
            "b.transform-2"
        ]
    );
    let fit = g.find("b.fit").unwrap();
    assert_eq!(
        ids(&g, g.task(fit).deps()),
        ["a.transform-0", "a.transform-1", "a.transform-2"]
    );
    assert_eq!(g.task(fit).kind(), TaskKind::Fit { step: 1 });
    let t1 = g.find("b.transform-1").unwrap();
    assert_eq!(ids(&g, g.task(t1).deps()), ["a.transform-1", "b.fit"]);
    assert_eq!(
        ids(&g, g.outputs()),
        ["b.transform-0", "b.transform-1", "b.transform-2"]
    );
    for (i, t) in g.tasks().iter().enumerate() {
        assert!(
            t.deps().iter().all(|&d| d < i),
            "tasks are in topological order"
        );
        for &d in t.deps() {
            assert!(g.dependents(d).contains(&i));
        }
    }
    assert_eq!(g.resources().get("q_short_gpu").unwrap(), &["b.fit"]);
}

#[test]
fn fit_alone_stops_at_the_last_fit_and_transform_has_no_fit() {
    let mut p = seed_like().then(Step::new(Id).name("c"));
    let g = TaskGraph::new(p.fit(samples(4)).npartitions(2).info().unwrap());
    let all: Vec<&str> = g.tasks().iter().map(|t| t.id()).collect();
    assert_eq!(
        all,
        [
            "load-0",
            "load-1",
            "a.transform-0",
            "a.transform-1",
            "b.fit"
        ]
    );
    assert!(g.outputs().is_empty());

    let stateless = Pipeline::new().then(Step::new(Id).name("a"));
    let mut s = stateless.clone();
    assert!(
        TaskGraph::new(s.fit(samples(4)).info().unwrap()).is_empty(),
        "nothing to fit, nothing to run"
    );
    let g = TaskGraph::new(stateless.transform(samples(4)).info().unwrap());
    assert!(
        g.tasks()
            .iter()
            .all(|t| !matches!(t.kind(), TaskKind::Fit { .. }))
    );
}

#[test]
fn fingerprint_is_stable_and_sees_every_change() {
    let fp = |p: &mut Pipeline<u8, u8>, n: usize| {
        TaskGraph::new(p.fit_transform(samples(20)).npartitions(n).info().unwrap()).fingerprint()
    };
    let base = fp(&mut seed_like(), 4);
    assert_eq!(
        base,
        fp(&mut seed_like(), 4),
        "the same program builds the same fingerprint"
    );
    assert_ne!(base, fp(&mut seed_like(), 5), "partitioning");
    let mut renamed = Pipeline::new()
        .then(Step::new(Id).name("x"))
        .then(Step::fit(Learn).name("b").fit_tag("q_short_gpu"));
    assert_ne!(base, fp(&mut renamed, 4), "step name");
    let mut retagged = Pipeline::new()
        .then(Step::new(Id).name("a"))
        .then(Step::fit(Learn).name("b").fit_tag("q_gpu"));
    assert_ne!(base, fp(&mut retagged, 4), "resource tag");
    let mut extra = Pipeline::new()
        .then(Step::new(Id).name("a").transform_extra("m", "metadata"))
        .then(Step::fit(Learn).name("b").fit_tag("q_short_gpu"));
    assert_ne!(base, fp(&mut extra, 4), "options");
}

#[test]
fn dot_names_every_task_and_edge() {
    let mut p = seed_like();
    let g = TaskGraph::new(p.fit_transform(samples(4)).npartitions(2).info().unwrap());
    let dot = g.to_dot();
    assert!(dot.starts_with("digraph pipeline {") && dot.trim_end().ends_with('}'));
    for t in g.tasks() {
        assert!(
            dot.contains(&format!("\"{}\" [", t.id())),
            "{} missing",
            t.id()
        );
    }
    assert!(dot.contains("\"a.transform-1\" -> \"b.fit\";"));
    assert!(dot.contains("[q_short_gpu]"));
    match g.to_svg().unwrap() {
        Some(svg) => assert!(
            // Graphviz writes `-` as `&#45;` in SVG text.
            svg.contains("<svg") && svg.contains("<title>a.transform&#45;1</title>"),
            "{svg}"
        ),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("Graphviz's `dot` must be installed in CI (scripts/test.sh installs it)")
        }
        None => eprintln!("skipped the SVG check: Graphviz's `dot` is not installed"),
    }
}
