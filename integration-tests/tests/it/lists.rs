//! Several lists of samples in one run: fit on one, transform the others in
//! the same task graph, on every executor.

use std::num::NonZeroUsize;

use bob_pipelines::executor::distributed::{Distributed, LocalProcesses, is_worker};
use bob_pipelines::prelude::*;
use ndarray::Array1;

use crate::distributed::{in_folder, nz, pipeline, run_dir};

type Bits = Vec<(String, Result<Vec<u64>, String>)>;

fn bits(out: &Outputs<Array1<f64>>) -> Bits {
    crate::distributed::bits(out)
}

/// `n` samples whose keys start with `list` (some end in 7: they fail).
fn list(name: &str, n: usize, from: usize) -> Vec<Sample<Array1<f64>>> {
    (from..from + n)
        .map(|i| {
            Sample::new(
                format!("{name}{i}"),
                Array1::from_vec(vec![i as f64, -0.5, (i as f64).sqrt()]),
            )
        })
        .collect()
}

/// `n` workers that run this test and nothing else.
fn local(test: &str, n: usize) -> Distributed<LocalProcesses> {
    let args = vec![
        "--exact".to_owned(),
        format!("lists::{test}"),
        "--nocapture".to_owned(),
    ];
    Distributed::new(LocalProcesses::new(nz(n), NonZeroUsize::MIN).args(args))
        .with_progress(std::sync::Arc::new(bob_pipelines::executor::Silent))
}

fn local_p2(test: &str) -> Distributed<LocalProcesses> {
    local(test, 2)
}

/// The experiment as three computes on `executor`: fit `p` on `train`,
/// then transform `enroll` and `probe` with it.
fn three_computes(
    p: &mut Pipeline<Array1<f64>, Array1<f64>>,
    executor: &dyn Executor,
) -> [Outputs<Array1<f64>>; 3] {
    let fit = p
        .fit(list("train", 60, 0))
        .npartitions(3)
        .compute(executor)
        .unwrap();
    let enroll = p
        .transform(list("enroll", 25, 100))
        .npartitions(3)
        .compute(executor)
        .unwrap();
    let probe = p
        .transform(list("probe", 40, 200))
        .npartitions(3)
        .compute(executor)
        .unwrap();
    [fit, enroll, probe]
}

/// The experiment as separate computes, single-threaded: what `enroll`
/// and `probe` give.
fn separately() -> (Bits, Bits) {
    let [_, enroll, probe] = three_computes(&mut pipeline(0), &SingleThreaded::new());
    (bits(&enroll), bits(&probe))
}

fn one_graph(executor: &dyn Executor) -> (Bits, Bits, bob_pipelines::estimator::Report) {
    let mut p = pipeline(0);
    let mut out = p
        .fit(list("train", 60, 0))
        .named("train")
        .and_transform("enroll", list("enroll", 25, 100))
        .and_transform("probe", list("probe", 40, 200))
        .npartitions(3)
        .compute(executor)
        .unwrap();
    assert!(out.is_empty(), "a fit gives back nothing of its own list");
    assert_eq!(out.list_names().collect::<Vec<_>>(), ["enroll", "probe"]);
    let enroll = out.take_list("enroll").unwrap();
    let probe = out.take_list("probe").unwrap();
    assert!(out.take_list("probe").is_none());
    (bits(&enroll), bits(&probe), out.report().clone())
}

#[test]
fn one_graph_gives_every_list_what_separate_computes_give_on_every_executor() {
    // Workers run this test again up to the distributed compute: only the
    // driver computes the references and runs the other executors.
    let ex = local_p2("one_graph_gives_every_list_what_separate_computes_give_on_every_executor");
    let distributed = one_graph(&ex);
    let expected = separately();
    let executors: Vec<Box<dyn Executor>> = vec![
        Box::new(SingleThreaded::new()),
        Box::new(ThreadPool::new(nz(3))),
        Box::new(InMemory),
    ];
    let runs = executors
        .iter()
        .map(|ex| (ex.name(), one_graph(&**ex)))
        .chain([(ex.name(), distributed)]);
    let on_workers = |r: &bob_pipelines::estimator::Report| {
        r.tasks.iter().any(|t| t.worker.starts_with("local-"))
    };
    for (name, (enroll, probe, report)) in runs {
        assert_eq!((enroll, probe), expected, "on {name}");
        assert_eq!(on_workers(&report), name == ex.name(), "on {name}");
        let lists: Vec<String> = report.lists.iter().map(ToString::to_string).collect();
        assert_eq!(
            lists,
            [
                "train (fit): 60 samples in 3 partitions",
                "enroll (transform): 25 samples in 3 partitions",
                "probe (transform): 40 samples in 3 partitions"
            ],
            "on {name}"
        );
        // The fit learnt from `train` alone: 60 samples, 6 of them failed
        // at the first step; every list went through it.
        assert_eq!(report.steps[0].samples, 60 + 25 + 40, "on {name}");
        // The second step has the lists' samples that did not fail at the first.
        assert_eq!(report.steps[1].samples, (25 - 2) + (40 - 4), "on {name}");
        if name != "in-memory" {
            // The task stream names the lists.
            let ids: Vec<&str> = report.tasks.iter().map(|t| &*t.task).collect();
            for id in [
                "train:load-2",
                "enroll:slow.transform-0",
                "probe:center.transform-2",
            ] {
                assert!(ids.contains(&id), "{id} not in {ids:?} on {name}");
            }
        }
    }
}

#[test]
fn the_lists_transforms_wait_for_the_fit_only_from_the_fitted_step_on() {
    let mut p = pipeline(0);
    let lazy = p
        .fit(list("train", 60, 0))
        .and_transform("probe", list("probe", 40, 200))
        .npartitions(3);
    let g = TaskGraph::new(lazy.info().unwrap());
    let deps = |id: &str| -> Vec<String> {
        let t = g.find(id).unwrap_or_else(|| panic!("no task {id}"));
        g.task(t)
            .deps()
            .iter()
            .map(|&d| g.task(d).id().to_owned())
            .collect()
    };
    // The first list is unnamed: its ids are as in a run of one list.
    assert_eq!(
        deps("center.fit"),
        ["slow.transform-0", "slow.transform-1", "slow.transform-2"]
    );
    assert_eq!(deps("probe:slow.transform-1"), ["probe:load-1"]);
    assert_eq!(
        deps("probe:center.transform-1"),
        ["probe:slow.transform-1", "center.fit"]
    );
    // A fit stops its own list at the fit; the others go to the end.
    assert!(g.find("center.transform-0").is_none());
    let outputs: Vec<&str> = g.outputs().iter().map(|&o| g.task(o).id()).collect();
    assert_eq!(
        outputs,
        [
            "probe:center.transform-0",
            "probe:center.transform-1",
            "probe:center.transform-2"
        ]
    );
    assert!(g.to_dot().contains("probe #1"), "{}", g.to_dot());
    // The dry run names the lists.
    let plan = g.plan().to_string();
    assert!(
        plan.contains("list (first) (fit): 60 samples in 3 partitions; 0 partition(s) from checkpoints, 60 sample-steps to compute")
            && plan.contains("list probe (transform): 40 samples in 3 partitions; 0 partition(s) from checkpoints, 80 sample-steps to compute"),
        "{plan}"
    );
}

#[test]
fn a_checkpointed_experiment_in_one_graph_computes_nothing_the_second_time() {
    let dir = run_dir("lists-ck");
    if !is_worker() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let ex = local_p2("a_checkpointed_experiment_in_one_graph_computes_nothing_the_second_time");
    for round in 0..2 {
        let mut p = pipeline(0).checkpoint(in_folder(&dir));
        let lazy = p
            .fit(list("train", 60, 0))
            .and_transform("enroll", list("enroll", 25, 100))
            .and_transform("probe", list("probe", 40, 200))
            .npartitions(3);
        if round == 1 && !is_worker() {
            // The dry run says, list by list, that all is on disk.
            let plan = TaskGraph::new(lazy.info().unwrap()).plan().to_string();
            assert!(
                plan.contains("enroll (transform): 25 samples in 3 partitions; 3 partition(s) from checkpoints, 0 sample-steps to compute"),
                "{plan}"
            );
        }
        let mut out = lazy.compute(&ex).unwrap();
        let r = out.report().clone();
        let got = (
            bits(&out.take_list("enroll").unwrap()),
            bits(&out.take_list("probe").unwrap()),
        );
        assert_eq!(got, separately(), "round {round}");
        if round == 1 {
            assert!(!r.steps[1].fitted, "the model is read back: {r}");
            assert_eq!(r.steps[0].samples + r.steps[1].samples, 0, "{r}");
            assert_eq!(
                (r.from_checkpoints, r.known_failed),
                (25 + 40, 2 + 4),
                "{r}"
            );
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        }
    }
    assert!(dir.join("features/center/probe200.npy").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lists_of_sample_sets_come_back_as_sets() {
    let sets = (0..5).map(|s| {
        SampleSet::new(
            format!("subject{s}"),
            list(&format!("subject{s}-"), 4, 5 * s),
        )
        .with_attr("subject", s as i64)
    });
    let mut p = pipeline(0);
    let mut out = p
        .fit_transform(list("train", 30, 0))
        .and_transform_sets("enroll", sets)
        .unwrap()
        .compute(&ThreadPool::new(nz(2)))
        .unwrap();
    assert_eq!(out.len(), 30);
    let enrolled = out.take_sets("enroll").unwrap();
    let keys: Vec<&str> = enrolled.sets().iter().map(|s| s.key().as_str()).collect();
    assert_eq!(
        keys,
        ["subject0", "subject1", "subject2", "subject3", "subject4"]
    );
    // subject1-7 and subject3-17 end in 7: they failed.
    let sizes: Vec<usize> = enrolled.sets().iter().map(|s| s.len()).collect();
    assert_eq!(sizes, [4, 3, 4, 3, 4]);
    assert_eq!(enrolled.failed().len(), 2);
    assert!(out.take_sets("enroll").is_none());
}

#[test]
fn a_bad_list_name_is_an_error_that_names_it() {
    let mut p = pipeline(0);
    for (name, why) in [
        ("", "empty"),
        ("dev probe", "letters, digits"),
        ("enroll", "another list"),
    ] {
        let lazy = p
            .fit(list("train", 6, 0))
            .and_transform("enroll", list("enroll", 2, 10))
            .and_transform(name, list("x", 2, 20));
        let e = lazy.info().unwrap_err().to_string();
        assert!(e.contains(&format!("`{name}`")) && e.contains(why), "{e}");
    }
}

/// `examples/experiment.rs`: bob.bio's shape in one compute on worker
/// processes, bob's score file, and nothing computed the second time.
#[test]
fn the_experiment_example_scores_in_one_compute_and_computes_nothing_again() {
    let example = crate::workspace_binary("example", "experiment", &[]);
    let out = std::env::temp_dir().join(format!("bp-experiment-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = || {
        let run = std::process::Command::new(&example)
            .args(["local-p2", "--out", out.to_str().unwrap()])
            .env("BOB_PIPELINES_DASHBOARD", "off")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "{text}\n{err}");
        (text, err)
    };
    let (first, err) = run();
    // One compute: workers replay nothing, and say nothing.
    assert_eq!(
        first.matches("compute 1:").count() + err.matches("compute 1:").count(),
        1,
        "{first}\n{err}"
    );
    assert!(
        !err.contains("compute 2") && !err.contains("earlier compute"),
        "{err}"
    );
    assert!(
        first.contains("15 enrolled subjects, 90 probes, 1350 scores"),
        "{first}"
    );
    assert!(!first.contains("nothing computed"), "{first}");
    let scores = std::fs::read_to_string(out.join("scores-dev.txt")).unwrap();
    assert_eq!(scores.lines().count(), 1350);
    for line in scores.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 4, "{line}");
        assert!(
            f[3].parse::<f64>().is_ok_and(|s| (-1.0..=1.0).contains(&s)),
            "{line}"
        );
    }
    let (second, _) = run();
    assert!(second.contains("nothing computed"), "{second}");
    assert_eq!(
        std::fs::read_to_string(out.join("scores-dev.txt")).unwrap(),
        scores
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// The workers named in a run's report, each with its first state.
fn workers_of(r: &bob_pipelines::estimator::Report) -> Vec<(String, String)> {
    r.workers
        .iter()
        .map(|w| {
            let first = w
                .states
                .first()
                .map(|s| s.state.clone())
                .unwrap_or_default();
            (w.worker.clone(), first)
        })
        .collect()
}

/// A program of three computes on one executor: the workers of the first
/// serve the next two in the same processes (no new worker is started),
/// and the outputs are those of separate executors.
#[test]
fn a_program_of_three_computes_keeps_its_workers_from_one_to_the_next() {
    let dir = run_dir("lists-kept");
    if !is_worker() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let ex = local_p2("a_program_of_three_computes_keeps_its_workers_from_one_to_the_next");
    let mut p = pipeline(0).checkpoint(in_folder(&dir));
    let [fit, enroll, probe] = three_computes(&mut p, &ex);
    assert_eq!((bits(&enroll), bits(&probe)), separately());
    let mut first = workers_of(fit.report());
    first.sort();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|(_, s)| s == "submitted"), "{first:?}");
    for out in [&enroll, &probe] {
        let mut kept = workers_of(out.report());
        kept.sort();
        assert_eq!(
            kept.iter().map(|(w, _)| w).collect::<Vec<_>>(),
            first.iter().map(|(w, _)| w).collect::<Vec<_>>(),
            "the same workers: {kept:?}"
        );
        assert!(
            kept.iter()
                .all(|(_, s)| s == "kept from the program's last compute"),
            "{kept:?}"
        );
        assert!(
            out.report()
                .tasks
                .iter()
                .all(|t| t.worker.starts_with("local-")),
            "the tasks ran on the kept workers"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker kept for a next compute that does not come within the death
/// timeout leaves; the next compute then starts new workers.
#[test]
fn kept_workers_leave_when_no_next_compute_comes_in_time() {
    // Four: more than the three early ends that stop a run for workers
    // that cannot start.
    let ex = local("kept_workers_leave_when_no_next_compute_comes_in_time", 4)
        .death_timeout(std::time::Duration::from_secs(1));
    let mut p = pipeline(0);
    let fit = p
        .fit(list("train", 60, 0))
        .npartitions(3)
        .compute(&ex)
        .unwrap();
    if !is_worker() {
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    let probe = p
        .transform(list("probe", 40, 200))
        .npartitions(8)
        .compute(&ex)
        .unwrap();
    assert_eq!(probe.len(), 40);
    let before: Vec<String> = workers_of(fit.report()).into_iter().map(|w| w.0).collect();
    assert_eq!(before.len(), 4, "{before:?}");
    let after = workers_of(probe.report());
    assert!(!after.is_empty(), "{after:?}");
    for (w, state) in &after {
        assert!(
            !before.contains(w) && state == "submitted",
            "{before:?} → {after:?}"
        );
    }
}

/// Keeps what workers say.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<String>>);
impl bob_pipelines::executor::Progress for Heard {
    fn worker_said(&self, worker: &str, line: &str) {
        self.0.lock().unwrap().push(format!("{worker}: {line}"));
    }
}

/// Workers replay a checkpointed earlier compute in silence; one that is
/// not checkpointed is computed again in each worker, which says so with
/// the fixes.
#[test]
fn an_earlier_compute_is_replayed_in_silence_or_said_with_the_fix() {
    for checkpointed in [true, false] {
        let heard = std::sync::Arc::new(Heard::default());
        let ex = local_p2("an_earlier_compute_is_replayed_in_silence_or_said_with_the_fix")
            .keep_workers(false)
            .with_progress(heard.clone());
        let dir = run_dir(&format!("lists-replay-{checkpointed}"));
        if !is_worker() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut p = pipeline(0);
        if checkpointed {
            p = p.checkpoint(in_folder(&dir));
        }
        let [_, _, probe] = three_computes(&mut p, &ex);
        assert_eq!(probe.len(), 40);
        let said = heard.0.lock().unwrap().join("\n");
        if checkpointed {
            assert!(said.is_empty(), "{said}");
        } else {
            assert!(
                said.contains("is computed again in each worker")
                    && said.contains("pipeline.checkpoint(")
                    && said.contains(".and_transform("),
                "{said}"
            );
        }
    }
    // Only now: the second round's workers replay the first round's
    // computes from its checkpoints.
    for checkpointed in [true, false] {
        let _ = std::fs::remove_dir_all(run_dir(&format!("lists-replay-{checkpointed}")));
    }
}
