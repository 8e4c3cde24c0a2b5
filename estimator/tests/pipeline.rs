//! Pipelines through the public API: failed samples, extra arguments, fitting,
//! attribute adapters, sets, naming and every bad input a user can give.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bob_pipelines_estimator::{
    Batch, BoxError, DATA, Error, Failure, Fit, InMemory, LOAD_STEP, Options, Partitioning,
    Pipeline, SampleResult, Step, Tags, Transformer,
};
use bob_pipelines_graph::Error as RunError;
use bob_pipelines_sample::{DelayedSample, DelayedSampleSet, Sample, SampleSet};
use serde::{Deserialize, Serialize};

/// Fails the samples at even positions of its batch (bob's failing transformer).
struct FailEven;
impl Transformer for FailEven {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Ok(b.iter()
            .enumerate()
            .map(|(i, x)| {
                if i % 2 == 0 {
                    Err(Failure::new(format!("even position {i}")))
                } else {
                    Ok(*x)
                }
            })
            .collect())
    }
}

/// Adds a constant.
struct Add(u32);
impl Transformer for Add {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x + self.0)).collect())
    }
}

/// Learns the sum of its inputs (and counts how many it saw), adds it.
struct LearnSum {
    seen: Arc<AtomicUsize>,
}
#[derive(Serialize, Deserialize)]
struct AddSum {
    sum: u32,
}
impl Fit for LearnSum {
    type Input = u32;
    type Fitted = AddSum;
    fn fit(&self, b: &Batch<'_, u32>) -> Result<AddSum, BoxError> {
        self.seen.fetch_add(b.len(), Ordering::SeqCst);
        Ok(AddSum {
            sum: b.iter().sum(),
        })
    }
}
impl Transformer for AddSum {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x + self.sum)).collect())
    }
}

fn samples(n: u32) -> Vec<Sample<u32>> {
    (0..n)
        .map(|i| Sample::new(i.to_string(), i).with_attr("label", i % 3))
        .collect()
}

fn data<T: Copy>(out: &bob_pipelines_estimator::Outputs<T>) -> Vec<T> {
    out.samples().map(|s| *s.data()).collect()
}

#[test]
fn two_failing_steps_leave_exactly_samples_3_and_7() {
    let p = Pipeline::new().then(FailEven).then(FailEven);
    // "Every second sample of the batch": one batch, as in bob's test.
    let out = p
        .transform(samples(10))
        .npartitions(1)
        .compute(&InMemory)
        .unwrap();
    let keys: Vec<&str> = out.samples().map(|s| s.key().as_str()).collect();
    assert_eq!(keys, ["3", "7"]);
    // Failures keep their positions and say where and why.
    assert_eq!(out.len(), 10);
    let slots: Vec<_> = out.iter().collect();
    assert!(slots[0].is_err() && slots[3].is_ok() && slots[7].is_ok());
    let f = slots[1].as_ref().unwrap_err();
    assert_eq!(
        (f.key().as_str(), f.step(), f.reason()),
        ("1", "faileven-2", "even position 0")
    );
    assert_eq!(out.report().steps[0].failed, 5);
    assert_eq!(out.report().steps[1].samples, 5);
    assert_eq!(out.report().steps[1].failed, 3);
}

#[test]
fn fit_ignores_failed_samples_and_sees_the_previous_steps_output() {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut p = Pipeline::new()
        .then(FailEven)
        .then(Add(100))
        .then(LearnSum { seen: seen.clone() });
    assert!(p.requires_fit() && !p.is_fitted());
    // One batch: `FailEven` fails by position in its batch.
    let out = p
        .fit_transform(samples(10))
        .npartitions(1)
        .compute(&InMemory)
        .unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "fit saw only the 5 surviving samples"
    );
    // Survivors 1,3,5,7,9 → +100 → sum 525.
    assert_eq!(data(&out), [626, 628, 630, 632, 634]);
    assert!(p.is_fitted());
    assert!(out.report().steps[2].fitted);
    // A later transform reuses the model: no new fit.
    let again = p
        .transform(samples(10))
        .npartitions(1)
        .compute(&InMemory)
        .unwrap();
    assert_eq!(data(&again), data(&out));
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

#[test]
fn fit_alone_then_transform_matches_fit_transform() {
    let mut a = Pipeline::new()
        .then(Add(1))
        .then(LearnSum {
            seen: Default::default(),
        })
        .then(Add(2));
    let mut b = a.clone();
    a.fit(samples(50)).compute(&InMemory).unwrap();
    let ta = a.transform(samples(50)).compute(&InMemory).unwrap();
    let tb = b.fit_transform(samples(50)).compute(&InMemory).unwrap();
    assert_eq!(data(&ta), data(&tb));
}

#[test]
fn transform_before_fit_is_an_error_naming_the_step() {
    let p = Pipeline::new().then(Add(1)).then(
        Step::fit(LearnSum {
            seen: Default::default(),
        })
        .name("sum"),
    );
    match p.transform(samples(3)).compute(&InMemory) {
        Err(Error::Run(RunError::NotFitted { step })) => assert_eq!(step, "sum"),
        other => panic!("expected NotFitted, got {other:?}"),
    }
}

#[test]
fn many_partitions_keep_input_order_and_fit_on_everything() {
    // More than one in-memory partition (16 384 samples each).
    let n = 40_000u32;
    let seen = Arc::new(AtomicUsize::new(0));
    let mut p = Pipeline::new()
        .then(Add(1))
        .then(LearnSum { seen: seen.clone() })
        .then(Add(0));
    let out = p.fit_transform(samples(n)).compute(&InMemory).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), n as usize);
    let sum: u32 = (1..=n).sum();
    let expected: Vec<u32> = (0..n).map(|i| i + 1 + sum).collect();
    assert_eq!(data(&out), expected);
    let keys_in_order = out
        .samples()
        .enumerate()
        .all(|(i, s)| s.key().as_str() == i.to_string());
    assert!(keys_in_order);
}

#[test]
fn fitted_model_round_trips_through_msgpack() {
    let mut p = Pipeline::new().then(
        Step::fit(LearnSum {
            seen: Default::default(),
        })
        .name("sum"),
    );
    p.fit(samples(4)).compute(&InMemory).unwrap();
    let bytes = p.model_bytes("sum").unwrap();
    let mut fresh = Pipeline::new().then(
        Step::fit(LearnSum {
            seen: Default::default(),
        })
        .name("sum"),
    );
    fresh.load_model("sum", &bytes).unwrap();
    assert_eq!(
        data(&fresh.transform(samples(4)).compute(&InMemory).unwrap()),
        [6, 7, 8, 9]
    );
    let e = fresh
        .load_model("sum", b"\xc1garbage")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`sum`") && e.contains("decoded"), "{e}");
    let e = fresh.model_bytes("nope").unwrap_err().to_string();
    assert!(e.contains("`nope`") && e.contains("sum"), "{e}");
}

/// Multiplies by extra argument `factor`.
struct Scale;
impl Transformer for Scale {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        let f: Vec<u32> = b.extra("factor")?;
        Ok(b.iter().zip(f).map(|(x, f)| Ok(x * f)).collect())
    }
}

#[test]
fn extra_arguments_come_from_the_mapped_attribute() {
    let p = Pipeline::new().then(Step::new(Scale).transform_extra("factor", "label"));
    let out = p.transform(samples(6)).compute(&InMemory).unwrap();
    assert_eq!(data(&out), [0, 1, 4, 0, 4, 10]);
}

#[test]
fn an_extra_argument_can_name_the_datum_as_in_bob() {
    // `("factor", "data")`: the datum itself.
    let p = Pipeline::new().then(Step::new(Scale).transform_extra("factor", DATA));
    let out = p.transform(samples(6)).compute(&InMemory).unwrap();
    assert_eq!(data(&out), [0, 1, 4, 9, 16, 25]);

    // Reading an attribute, the datum is still there as an argument.
    let p = Pipeline::new().then(
        Step::new(Scale)
            .input_attribute("label")
            .transform_extra("factor", "data"),
    );
    let out = p.transform(samples(6)).compute(&InMemory).unwrap();
    assert_eq!(data(&out), [0, 1, 4, 0, 4, 10]);

    // And in a fit: `fit_extra("y", "data")`, bob's supervised pattern.
    struct SumOfY;
    impl Fit for SumOfY {
        type Input = u32;
        type Fitted = AddSum;
        fn fit(&self, b: &Batch<'_, u32>) -> Result<AddSum, BoxError> {
            let y: Vec<u32> = b.extra("y")?;
            Ok(AddSum {
                sum: y.iter().sum(),
            })
        }
    }
    let mut p = Pipeline::new().then(
        Step::fit(SumOfY)
            .input_attribute("label")
            .fit_extra("y", "data"),
    );
    let out = p.fit_transform(samples(4)).compute(&InMemory).unwrap();
    assert_eq!(data(&out), [6, 7, 8, 6], "labels + (0 + 1 + 2 + 3)");

    // A datum that is not of the argument's type names the sample and `data`.
    let texts: Vec<_> = (0..3)
        .map(|i| Sample::new(format!("t{i}"), format!("img{i}")).with_attr("label", i))
        .collect();
    let p = Pipeline::new().then(
        Step::new(Scale)
            .name("scale")
            .input_attribute("label")
            .transform_extra("factor", "data"),
    );
    let msg = p
        .transform(texts)
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    for part in ["`scale`", "`factor`", "\"t0\"", "`data`"] {
        assert!(msg.contains(part), "{part} missing in: {msg}");
    }
}

#[test]
fn missing_extra_attribute_names_step_key_and_attribute() {
    let p = Pipeline::new().then(
        Step::new(Scale)
            .name("scale")
            .transform_extra("factor", "weight"),
    );
    let e = p.transform(samples(3)).compute(&InMemory).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Extra { .. }), "{msg}");
    for part in ["`scale`", "`factor`", "\"0\"", "`weight`", "label"] {
        assert!(msg.contains(part), "{part} missing in: {msg}");
    }
    // Asking for an argument the step does not map.
    let p = Pipeline::new().then(Step::new(Scale).name("scale"));
    let msg = p
        .transform(samples(3))
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`factor`") && msg.contains("transform_extra"),
        "{msg}"
    );
}

#[test]
fn tags_give_defaults_that_step_options_override() {
    struct Tagged;
    impl Transformer for Tagged {
        type Input = u32;
        type Output = u32;
        fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
            Scale.transform(b)
        }
        fn tags(&self) -> Tags {
            Tags::new().transform_extra("factor", "missing")
        }
    }
    assert!(
        Pipeline::new()
            .then(Tagged)
            .transform(samples(2))
            .compute(&InMemory)
            .is_err()
    );
    let p = Pipeline::new().then(Step::new(Tagged).transform_extra("factor", "label"));
    assert_eq!(
        data(&p.transform(samples(3)).compute(&InMemory).unwrap()),
        [0, 1, 4]
    );
}

/// Learns the mean of extra argument `y`.
struct MeanOfY;
#[derive(Serialize, Deserialize)]
struct AddMean(u32);
impl Fit for MeanOfY {
    type Input = u32;
    type Fitted = AddMean;
    fn fit(&self, b: &Batch<'_, u32>) -> Result<AddMean, BoxError> {
        let y: Vec<u32> = b.extra("y")?;
        Ok(AddMean(y.iter().sum::<u32>() / y.len() as u32))
    }
}
impl Transformer for AddMean {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Ok(b.iter().map(|x| Ok(x + self.0)).collect())
    }
}

#[test]
fn fit_extra_arguments_are_separate_from_transform_ones() {
    let mut p = Pipeline::new().then(Step::fit(MeanOfY).fit_extra("y", "label"));
    // labels of 0..6 are 0,1,2,0,1,2 → mean 1
    assert_eq!(
        data(&p.fit_transform(samples(6)).compute(&InMemory).unwrap()),
        [1, 2, 3, 4, 5, 6]
    );
    let mut unmapped = Pipeline::new().then(
        Step::fit(MeanOfY)
            .name("mean")
            .transform_extra("y", "label"),
    );
    let msg = unmapped
        .fit(samples(6))
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`mean`") && msg.contains("fit asked") && msg.contains("fit_extra"),
        "{msg}"
    );
}

/// Returns one result too few.
struct Short;
impl Transformer for Short {
    type Input = u32;
    type Output = u32;
    fn transform(&self, b: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Ok(b.iter().skip(1).map(|x| Ok(*x)).collect())
    }
}

#[test]
fn wrong_number_of_outputs_names_the_step() {
    let e = Pipeline::new()
        .then(Short)
        .transform(samples(4))
        .npartitions(1)
        .compute(&InMemory)
        .unwrap_err();
    match e {
        Error::OutputCount {
            step,
            expected,
            got,
        } => assert_eq!((step.as_str(), expected, got), ("short", 4, 3)),
        other => panic!("expected OutputCount, got {other}"),
    }
}

/// Stacks its batch into one array (shapes must agree).
struct Stacker;
impl Transformer for Stacker {
    type Input = Vec<f64>;
    type Output = f64;
    fn transform(&self, b: &Batch<'_, Vec<f64>>) -> Result<Vec<SampleResult<f64>>, BoxError> {
        let x = b.to_array()?;
        Ok(x.rows().into_iter().map(|r| Ok(r.sum())).collect())
    }
}

#[test]
fn shape_mismatch_in_a_batch_names_step_and_sample() {
    let s = vec![
        Sample::new("a", vec![1.0, 2.0]),
        Sample::new("b", vec![1.0]),
    ];
    let msg = Pipeline::new()
        .then(Stacker)
        .transform(s)
        .npartitions(1)
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`stacker`") && msg.contains("\"b\"") && msg.contains("[1]"),
        "{msg}"
    );
    let ok = vec![
        Sample::new("a", vec![1.0, 2.0]),
        Sample::new("b", vec![3.0, 4.0]),
    ];
    assert_eq!(
        data(
            &Pipeline::new()
                .then(Stacker)
                .transform(ok)
                .compute(&InMemory)
                .unwrap()
        ),
        [3.0, 7.0]
    );
}

/// Fails the whole batch.
struct Broken;
impl Transformer for Broken {
    type Input = u32;
    type Output = u32;
    fn transform(&self, _: &Batch<'_, u32>) -> Result<Vec<SampleResult<u32>>, BoxError> {
        Err("the GPU fell off".into())
    }
}

#[test]
fn an_estimator_error_fails_the_run_naming_the_step() {
    let msg = Pipeline::new()
        .then(Add(1))
        .then(Broken)
        .transform(samples(2))
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`broken`") && msg.contains("transform") && msg.contains("GPU fell off"),
        "{msg}"
    );
}

#[test]
fn steps_are_named_like_make_pipeline() {
    let p = Pipeline::new()
        .then(Add(1))
        .then(FailEven)
        .then(Add(2))
        .then(Step::new(Add(3)).name("three"));
    assert_eq!(p.step_names(), ["add-1", "faileven", "add-2", "three"]);
    let dup = Pipeline::new()
        .then(Step::new(Add(1)).name("x"))
        .then(Step::new(Add(2)).name("x"));
    let msg = dup
        .transform(samples(1))
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`x`") && msg.contains("unique"), "{msg}");
}

#[test]
fn options_by_name_are_checked_like_bobs_wrap() {
    let opts = Options::new()
        .set_serde("transform_extra_arguments", &[("factor", "label")])
        .unwrap();
    let p = Pipeline::new().then(Step::new(Scale).options(&opts).unwrap());
    assert_eq!(
        data(&p.transform(samples(3)).compute(&InMemory).unwrap()),
        [0, 1, 4]
    );

    let e = Step::new(Scale)
        .options(&Options::new().set("npartition", 3))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, Error::UnknownOption { .. })
            && msg.contains("`npartition`")
            && msg.contains("fit_tag"),
        "{msg}"
    );

    let e = Step::new(Scale)
        .options(&Options::new().set("fit_tag", "q_short_gpu"))
        .unwrap_err();
    assert!(matches!(e, Error::UnusedOption { .. }), "{e}");
    assert!(e.to_string().contains("`fit_tag`") && e.to_string().contains("`scale`"));

    let fit = Step::fit(MeanOfY).options(
        &Options::new()
            .set("fit_tag", "q_short_gpu")
            .set("name", "m"),
    );
    let p = Pipeline::new().then(fit.unwrap());
    let info = p.steps().next().unwrap();
    assert_eq!(
        (info.name.as_str(), info.fit_tag.as_deref()),
        ("m", Some("q_short_gpu"))
    );

    let e = Step::new(Scale)
        .options(&Options::new().set("checkpoint", "yes"))
        .unwrap_err();
    assert!(matches!(e, Error::BadOption { .. }), "{e}");
}

#[test]
fn input_and_output_attributes() {
    // Read `label` instead of the datum; keep the datum and write to `scaled`.
    let p = Pipeline::new().then(
        Step::new(Add(10))
            .input_attribute("label")
            .output_attribute("scaled"),
    );
    let out = p.transform(samples(4)).compute(&InMemory).unwrap();
    let s: Vec<_> = out.samples().collect();
    assert_eq!(*s[2].data(), 2, "datum unchanged");
    assert_eq!(s[2].attr::<u32>("scaled").unwrap(), 12);
    assert_eq!(
        s[2].attr::<u32>("label").unwrap(),
        2,
        "other attributes inherited"
    );

    // A step reading an attribute accepts any datum type.
    let texts: Vec<_> = (0..3)
        .map(|i| Sample::new(i.to_string(), format!("img{i}")).with_attr("label", i))
        .collect();
    let p = Pipeline::new().then(Step::new(Add(1)).input_attribute("label"));
    let out = p.transform(texts).compute(&InMemory).unwrap();
    assert_eq!(data(&out), [1, 2, 3]);

    let p = Pipeline::new().then(Step::new(Add(1)).name("a").input_attribute("nope"));
    let msg = p
        .transform(samples(2))
        .compute(&InMemory)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`a`") && msg.contains("`nope`") && msg.contains("\"0\""),
        "{msg}"
    );
}

#[test]
fn sets_are_transformed_sample_by_sample_and_kept() {
    let sets = vec![
        SampleSet::new("s1", samples(3)).with_attr("subject", "alice"),
        SampleSet::new("s2", samples(4)).with_attr("subject", "bob"),
    ];
    // One batch across both sets (a partitioning, as the other entry points).
    let out = Pipeline::new()
        .then(FailEven)
        .transform_sets_with(sets, Partitioning::Count(1), &InMemory)
        .unwrap();
    let sets = out.sets();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].key(), "s2");
    assert_eq!(sets[1].attr::<String>("subject").unwrap(), "bob");
    // FailEven sees the flattened batch [0,1,2 | 0,1,2,3]: keeps positions 1,3,5.
    let inner: Vec<Vec<u32>> = sets
        .iter()
        .map(|s| s.iter().map(|x| *x.data()).collect())
        .collect();
    assert_eq!(inner, vec![vec![1], vec![0, 2]]);
    assert_eq!(out.failed().len(), 4);

    let mut fit = Pipeline::new().then(LearnSum {
        seen: Default::default(),
    });
    let delayed = DelayedSampleSet::new("lazy", || Ok::<_, BoxError>(samples(3)));
    let out = fit.fit_transform_sets([delayed], &InMemory).unwrap();
    assert_eq!(
        out.sets()[0].iter().map(|s| *s.data()).collect::<Vec<_>>(),
        [3, 4, 5]
    );

    let broken = DelayedSampleSet::<u32>::new("gone", || {
        Err::<Vec<_>, _>(std::io::Error::other("no such dir"))
    });
    let msg = Pipeline::new()
        .then(Add(1))
        .transform_sets([broken], &InMemory)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("\"gone\"") && msg.contains("no such dir"),
        "{msg}"
    );
}

#[test]
fn delayed_samples_load_when_reached_and_a_bad_one_fails_alone() {
    let loads = Arc::new(AtomicUsize::new(0));
    let input: Vec<DelayedSample<u32>> = (0..5u32)
        .map(|i| {
            let loads = loads.clone();
            DelayedSample::new(i.to_string(), move || {
                loads.fetch_add(1, Ordering::SeqCst);
                if i == 2 {
                    Err(std::io::Error::other("corrupt image"))
                } else {
                    Ok(i)
                }
            })
        })
        .collect();
    let out = Pipeline::new()
        .then(Add(1))
        .transform(input)
        .compute(&InMemory)
        .unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 5);
    assert_eq!(data(&out), [1, 2, 4, 5]);
    let f = out.failed().next().unwrap();
    assert_eq!((f.key().as_str(), f.step()), ("2", LOAD_STEP));
    assert!(f.reason().contains("corrupt image"));
    assert_eq!(out.report().load_failed, 1);
}

#[test]
fn partitioning_is_checked_and_failures_stay_per_batch() {
    let p = Pipeline::new().then(FailEven);
    for bad in [
        p.transform(samples(4)).npartitions(0),
        p.transform(samples(4)).partition_size(0),
    ] {
        let e = bad.compute(&InMemory).unwrap_err();
        assert!(matches!(e, Error::Partitioning(_)), "{e}");
    }
    // Two partitions of 5: each batch fails its own even positions.
    let out = p
        .transform(samples(10))
        .partition_size(5)
        .compute(&InMemory)
        .unwrap();
    assert_eq!(data(&out), [1, 3, 6, 8]);
}

#[test]
fn an_empty_input_gives_empty_outputs() {
    let mut p = Pipeline::new().then(Add(1));
    assert!(
        p.fit_transform(Vec::<Sample<u32>>::new())
            .compute(&InMemory)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_programs_codecs_carry_its_partitions_across_a_process_boundary() {
    use bob_pipelines_graph::AnyPartition;
    let p = Pipeline::new().then(FailEven).then(Add(1));
    let lazy = p.transform(samples(10)).npartitions(1);
    let info = lazy.info().unwrap().clone();
    let out = lazy.compute(&InMemory).unwrap();
    let parts = out.into_parts();
    let part: AnyPartition = Box::new(parts[0].clone());
    let wire = info.steps()[1].output();
    let back = wire.decode(&wire.encode(&part).unwrap()).unwrap();
    assert_eq!(
        *back
            .downcast::<Vec<bob_pipelines_estimator::Slot<u32>>>()
            .unwrap(),
        parts[0]
    );
    // The input partition's wire too: samples as the load task gives them.
    let input: AnyPartition = Box::new(
        samples(3)
            .into_iter()
            .map(Ok)
            .collect::<Vec<bob_pipelines_estimator::Slot<u32>>>(),
    );
    let codec = info.input();
    let again = codec.decode(&codec.encode(&input).unwrap()).unwrap();
    let again = again
        .downcast::<Vec<bob_pipelines_estimator::Slot<u32>>>()
        .unwrap();
    assert_eq!(again[2].as_ref().unwrap().attr::<u32>("label").unwrap(), 2);
}

#[test]
fn closure_steps_map_fail_samples_and_see_whole_batches() {
    let p = Pipeline::new()
        .then(Step::map("double", |x: &u32| x * 2))
        .then(Step::try_map("odd-only", |x: &u32| {
            if x % 4 == 0 {
                Err(format!("{x} is a multiple of 4"))
            } else {
                Ok(f64::from(*x))
            }
        }))
        .then(Step::batch("share", |b: &Batch<'_, f64>| {
            let total: f64 = b.iter().sum();
            Ok(b.iter().map(|x| Ok(x / total)).collect())
        }));
    assert_eq!(p.step_names(), ["double", "odd-only", "share"]);
    let out = p
        .transform(samples(4))
        .npartitions(1)
        .compute(&InMemory)
        .unwrap();
    // 0,1,2,3 → 0,2,4,6 → 0 and 4 fail → 2/8, 6/8 of their batch.
    let kept: Vec<f64> = out.samples().map(|s| *s.data()).collect();
    assert_eq!(kept, [0.25, 0.75]);
    let why: Vec<String> = out.failed().map(|f| f.reason().to_owned()).collect();
    assert_eq!(why, ["0 is a multiple of 4", "4 is a multiple of 4"]);
    assert!(out.failed().all(|f| f.step() == "odd-only"));
}

#[test]
fn a_fitted_model_is_read_back_as_its_type() {
    let mut p = Pipeline::new().then(
        Step::fit(LearnSum {
            seen: Default::default(),
        })
        .name("sum"),
    );
    let e = p.fitted::<AddSum>("sum").err().unwrap().to_string();
    assert!(e.contains("not fitted"), "{e}");
    p.fit(samples(4)).compute(&InMemory).unwrap();
    assert_eq!(p.fitted::<AddSum>("sum").unwrap().sum, 6);
    let e = p.fitted::<String>("sum").err().unwrap().to_string();
    assert!(e.contains("step `sum`") && e.contains("String"), "{e}");
    assert!(p.fitted::<AddSum>("nope").is_err());
}
