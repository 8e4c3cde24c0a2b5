//! Pipelines: named steps chained with their types checked at compile time.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bob_pipelines_sample::{DelayedSampleSet, Meta, SampleSet};

use bob_pipelines_checkpoint::default_codec;
use bob_pipelines_graph::{
    self as graph, Checkpoints, DataCodec, Executor, Failed, Mode, Model, ProgramStep, Report,
    data_codec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::lazy::{Lazy, Steps};
use crate::outputs::{Outputs, SampleSource, SetOutputs};
use crate::partitioning::Partitioning;
use crate::step::{BuiltStep, IntoStep, short_type_name};
use crate::{Error, Result};

#[derive(Clone)]
struct Entry {
    name: String,
    explicit: bool,
    short: String,
    step: BuiltStep,
    model: Option<Model>,
}

/// What a pipeline knows about one of its steps.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StepInfo {
    /// The step's name.
    pub name: String,
    /// Whether its estimator is a [`Fit`](crate::Fit) (bob's `estimator_requires_fit`).
    pub requires_fit: bool,
    /// Whether it has a fitted model.
    pub fitted: bool,
    /// The resource its fit task needs (bob's `fit_tag`).
    pub fit_tag: Option<String>,
    /// The resource its transform tasks need (bob's `transform_tag`).
    pub transform_tag: Option<String>,
    /// Whether it asked for its outputs to be checkpointed (`None`: the pipeline decides).
    pub checkpoint: Option<bool>,
}

/// A chain of steps from samples of datum `I` to samples of datum `O`:
/// scikit-learn's `Pipeline`, over samples.
///
/// Each [`then`](Self::then) adds a step whose input type must be the previous
/// step's output type — checked by the compiler. Steps are named from their
/// estimator's type (as `make_pipeline` does) unless named explicitly.
///
/// `fit`, `transform` and `fit_transform` build nothing yet: they return a
/// [`Lazy`] run that an [`Executor`] computes, as a dask-wrapped pipeline does.
///
/// ```
/// use bob_pipelines_estimator::{Batch, BoxError, InMemory, Pipeline, SampleResult, Transformer};
/// use bob_pipelines_sample::Sample;
///
/// struct Square;
/// impl Transformer for Square {
///     type Input = f64;
///     type Output = f64;
///     fn transform(&self, b: &Batch<'_, f64>) -> Result<Vec<SampleResult<f64>>, BoxError> {
///         Ok(b.iter().map(|x| Ok(x * x)).collect())
///     }
/// }
///
/// let pipeline = Pipeline::new().then(Square).then(Square);
/// assert_eq!(pipeline.step_names(), ["square-1", "square-2"]);
/// let samples = (1..=3).map(|i| Sample::new(i.to_string(), i as f64));
/// let out = pipeline.transform(samples).compute(&InMemory)?;
/// let values: Vec<f64> = out.samples().map(|s| *s.data()).collect();
/// assert_eq!(values, [1.0, 16.0, 81.0]);
/// # Ok::<(), bob_pipelines_estimator::Error>(())
/// ```
pub struct Pipeline<I, O> {
    entries: Vec<Entry>,
    checkpoints: Option<Checkpoints>,
    input: Arc<dyn DataCodec>,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for Pipeline<I, O> {
    fn clone(&self) -> Self {
        Pipeline {
            entries: self.entries.clone(),
            checkpoints: self.checkpoints.clone(),
            input: Arc::clone(&self.input),
            _types: PhantomData,
        }
    }
}

impl<I, O> fmt::Debug for Pipeline<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "steps",
                &self.entries.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<T> Pipeline<T, T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An empty pipeline (it passes samples through). Its input datum, like
    /// every step's output, is serde: partitions cross process boundaries.
    pub fn new() -> Self {
        Pipeline {
            entries: Vec::new(),
            checkpoints: None,
            input: data_codec(default_codec::<T>()),
            _types: PhantomData,
        }
    }
}

impl<T> Default for Pipeline<T, T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Pipeline<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// Adds a step: a [`Transformer`](crate::Transformer), a [`Fit`](crate::Fit)
    /// or a [`Step`](crate::Step) whose input is this pipeline's output.
    pub fn then<M, S: IntoStep<O, M>>(mut self, step: S) -> Pipeline<I, S::Output> {
        let built = step.into_step();
        let short = built
            .default_name
            .clone()
            .unwrap_or_else(|| short_type_name(built.type_name));
        self.entries.push(Entry {
            explicit: built.name.is_some(),
            name: built.name.clone().unwrap_or_else(|| short.clone()),
            short,
            step: built,
            model: None,
        });
        self.name_steps();
        Pipeline {
            entries: self.entries,
            checkpoints: self.checkpoints,
            input: self.input,
            _types: PhantomData,
        }
    }

    /// Checkpoints every step's outputs and fitted models (bob's
    /// `wrap(["checkpoint"], …)`); a step made with `.checkpoint(false)`, or whose
    /// output goes to an attribute, is not checkpointed. Runs then need a
    /// task-graph executor (`single-threaded`, `threads`, `local-parallel`, …).
    #[must_use]
    pub fn checkpoint(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// The checkpoint options, if the pipeline checkpoints.
    pub fn checkpoints(&self) -> Option<&Checkpoints> {
        self.checkpoints.as_ref()
    }

    /// scikit-learn's `_name_estimators`: a type name used by several unnamed
    /// steps gets suffixes `-1`, `-2`, … on each of them.
    fn name_steps(&mut self) {
        let mut total: HashMap<String, usize> = HashMap::new();
        for e in self.entries.iter().filter(|e| !e.explicit) {
            *total.entry(e.short.clone()).or_default() += 1;
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for e in self.entries.iter_mut().filter(|e| !e.explicit) {
            if total[&e.short] > 1 {
                let n = seen.entry(e.short.clone()).or_default();
                *n += 1;
                e.name = format!("{}-{n}", e.short);
            } else {
                e.name = e.short.clone();
            }
        }
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The step names, in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// What the pipeline knows about each step, in order.
    pub fn steps(&self) -> impl Iterator<Item = StepInfo> + '_ {
        self.entries.iter().map(|e| StepInfo {
            name: e.name.clone(),
            requires_fit: e.step.models.is_some(),
            fitted: e.model.is_some(),
            fit_tag: e.step.opts.fit_tag.clone(),
            transform_tag: e.step.opts.transform_tag.clone(),
            checkpoint: e.step.opts.checkpoint,
        })
    }

    /// Whether any step must be fitted (bob's `estimator_requires_fit`).
    pub fn requires_fit(&self) -> bool {
        self.entries.iter().any(|e| e.step.models.is_some())
    }

    /// Whether every step that needs a fit has a model.
    pub fn is_fitted(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.step.models.is_none() || e.model.is_some())
    }

    /// Checks what the types could not: unique step names.
    ///
    /// # Errors
    /// [`Error::DuplicateStep`].
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for e in &self.entries {
            if !seen.insert(e.name.as_str()) {
                return Err(Error::DuplicateStep {
                    name: e.name.clone(),
                });
            }
        }
        Ok(())
    }

    fn index(&self, step: &str) -> Result<usize> {
        self.entries
            .iter()
            .position(|e| e.name == step)
            .ok_or_else(|| Error::UnknownStep {
                name: step.to_owned(),
                steps: self.entries.iter().map(|e| e.name.clone()).collect(),
            })
    }

    /// The fitted model of a step, as its type: what `Fit::fit` returned
    /// (`pipeline.fitted::<Fitted<Pca<f64>, Projects>>("pca")?`).
    ///
    /// # Errors
    /// [`Error::UnknownStep`]; the run's `NotFitted`; [`Error::ModelType`]
    /// when the model is of another type, naming both.
    pub fn fitted<M: 'static>(&self, step: &str) -> Result<&M> {
        let e = &self.entries[self.index(step)?];
        let model = e.model.as_ref().ok_or_else(|| graph::Error::NotFitted {
            step: e.name.clone(),
        })?;
        model.downcast_ref::<M>().ok_or_else(|| Error::ModelType {
            step: e.name.clone(),
            asked: std::any::type_name::<M>(),
            estimator: e.step.type_name,
        })
    }

    /// The fitted model of a step, encoded as MessagePack: what a model
    /// checkpoint holds and what a worker receives.
    ///
    /// # Errors
    /// [`Error::UnknownStep`]; the run's `NotFitted`, or its `Model` for a
    /// stateless step or a model that does not serialize.
    pub fn model_bytes(&self, step: &str) -> Result<Vec<u8>> {
        let e = &self.entries[self.index(step)?];
        let model = e.model.as_ref().ok_or_else(|| graph::Error::NotFitted {
            step: e.name.clone(),
        })?;
        Ok(e.program_step().encode_model(model)?)
    }

    /// Sets a step's fitted model from [`model_bytes`](Self::model_bytes) output.
    ///
    /// # Errors
    /// [`Error::UnknownStep`], or the run's `Model` when the bytes are not a
    /// model of this step's type.
    pub fn load_model(&mut self, step: &str, bytes: &[u8]) -> Result<()> {
        let i = self.index(step)?;
        let e = &mut self.entries[i];
        e.model = Some(e.program_step().decode_model(bytes)?);
        Ok(())
    }

    /// Fits every step that needs it, in order, each on the outputs of the
    /// steps before it (all of them: bob's default). The models go into the
    /// pipeline when the computation succeeds, and only then.
    pub fn fit<'p, S, It>(&'p mut self, samples: It) -> Lazy<'p, I, O>
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Lazy::fitting(self, Mode::Fit, samples)
    }

    /// Transforms samples with the fitted steps. Outputs keep input order; a
    /// sample that failed anywhere is an `Err` at its position. Computing fails
    /// with the run's `NotFitted` error when a step needs a fit it does not have.
    pub fn transform<'p, S, It>(&'p self, samples: It) -> Lazy<'p, I, O>
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Lazy::shared(self, Mode::Transform, samples)
    }

    /// Fits, then transforms the same samples (without running the steps twice).
    pub fn fit_transform<'p, S, It>(&'p mut self, samples: It) -> Lazy<'p, I, O>
    where
        S: SampleSource<I> + Send + 'p,
        It: IntoIterator<Item = S>,
        It::IntoIter: Send + 'p,
    {
        Lazy::fitting(self, Mode::FitTransform, samples)
    }

    /// [`fit`](Self::fit) on the samples of every set, computed on `executor`.
    ///
    /// # Errors
    /// As `compute`, and [`Error::SetLoad`] for a delayed set that fails to load.
    pub fn fit_sets<S: SetSource<I>>(
        &mut self,
        sets: impl IntoIterator<Item = S>,
        executor: &(impl Executor + ?Sized),
    ) -> Result<Report> {
        self.fit_sets_with(sets, Partitioning::Auto, executor)
    }

    /// [`fit_sets`](Self::fit_sets) with the sets' samples cut by `partitioning`.
    ///
    /// # Errors
    /// As [`fit_sets`](Self::fit_sets).
    pub fn fit_sets_with<S: SetSource<I>>(
        &mut self,
        sets: impl IntoIterator<Item = S>,
        partitioning: Partitioning,
        executor: &(impl Executor + ?Sized),
    ) -> Result<Report> {
        let (_, samples) = flatten(sets)?;
        let lazy = self.fit(samples).partitioning(partitioning);
        Ok(lazy.compute(executor)?.report)
    }

    /// [`transform`](Self::transform) for sets, computed on `executor`: every
    /// inner sample is transformed and the sets come back with their keys and
    /// attributes.
    ///
    /// # Errors
    /// As `compute`, and [`Error::SetLoad`].
    pub fn transform_sets<S: SetSource<I>>(
        &self,
        sets: impl IntoIterator<Item = S>,
        executor: &(impl Executor + ?Sized),
    ) -> Result<SetOutputs<O>> {
        self.transform_sets_with(sets, Partitioning::Auto, executor)
    }

    /// [`transform_sets`](Self::transform_sets) with the sets' samples cut
    /// by `partitioning`.
    ///
    /// # Errors
    /// As [`transform_sets`](Self::transform_sets).
    pub fn transform_sets_with<S: SetSource<I>>(
        &self,
        sets: impl IntoIterator<Item = S>,
        partitioning: Partitioning,
        executor: &(impl Executor + ?Sized),
    ) -> Result<SetOutputs<O>> {
        let (layout, samples) = flatten(sets)?;
        let lazy = self.transform(samples).partitioning(partitioning);
        Ok(regroup(layout, lazy.compute(executor)?))
    }

    /// [`fit_transform`](Self::fit_transform) for sets, computed on `executor`.
    ///
    /// # Errors
    /// As `compute`, and [`Error::SetLoad`].
    pub fn fit_transform_sets<S: SetSource<I>>(
        &mut self,
        sets: impl IntoIterator<Item = S>,
        executor: &(impl Executor + ?Sized),
    ) -> Result<SetOutputs<O>> {
        self.fit_transform_sets_with(sets, Partitioning::Auto, executor)
    }

    /// [`fit_transform_sets`](Self::fit_transform_sets) with the sets'
    /// samples cut by `partitioning`.
    ///
    /// # Errors
    /// As [`fit_transform_sets`](Self::fit_transform_sets).
    pub fn fit_transform_sets_with<S: SetSource<I>>(
        &mut self,
        sets: impl IntoIterator<Item = S>,
        partitioning: Partitioning,
        executor: &(impl Executor + ?Sized),
    ) -> Result<SetOutputs<O>> {
        let (layout, samples) = flatten(sets)?;
        let lazy = self.fit_transform(samples).partitioning(partitioning);
        Ok(regroup(layout, lazy.compute(executor)?))
    }
}

impl<I, O> Steps for Pipeline<I, O>
where
    I: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    fn validate(&self) -> Result<()> {
        Pipeline::validate(self)
    }

    fn program_steps(&self) -> Vec<ProgramStep> {
        self.entries.iter().map(Entry::program_step).collect()
    }

    fn input_codec(&self) -> Arc<dyn DataCodec> {
        Arc::clone(&self.input)
    }

    fn checkpoints(&self) -> Option<&Checkpoints> {
        self.checkpoints.as_ref()
    }

    fn set_models(&mut self, models: Vec<Option<Model>>) {
        for (e, m) in self.entries.iter_mut().zip(models) {
            e.model = m;
        }
    }
}

impl Entry {
    fn program_step(&self) -> ProgramStep {
        let b = &self.step;
        let step = ProgramStep::new(
            self.name.clone(),
            b.type_name,
            Arc::clone(&b.op),
            Arc::clone(&b.output),
        )
        .attribute(b.attribute.clone())
        .options(b.opts.clone())
        .model(self.model.clone());
        match &b.models {
            Some(m) => step.fitted(Arc::clone(m)),
            None => step,
        }
    }
}

/// Anything a pipeline accepts as one input sample set: a [`SampleSet`] of
/// [`Sample`](bob_pipelines_sample::Sample)s or of [`DelayedSample`](bob_pipelines_sample::DelayedSample)s, or a
/// [`DelayedSampleSet`].
///
/// The members of a set are handled as plain input samples are: a delayed one
/// is loaded only when a step has to compute it, so a set whose outputs are all
/// checkpointed resumes without loading anything. A [`DelayedSampleSet`]'s
/// loader, which gives loaded samples, runs when the run starts.
pub trait SetSource<T> {
    /// What the set holds, as the pipeline takes it.
    type Member: SampleSource<T> + Send;

    /// The set's members and its metadata.
    ///
    /// # Errors
    /// [`Error::SetLoad`] when a delayed set cannot be loaded.
    fn into_members(self) -> Result<(Vec<Self::Member>, Arc<Meta>)>;
}

impl<T, S> SetSource<T> for SampleSet<T, S>
where
    S: SampleSource<T> + Send,
{
    type Member = S;
    fn into_members(self) -> Result<(Vec<S>, Arc<Meta>)> {
        Ok(self.into_parts())
    }
}

impl<T: Send> SetSource<T> for DelayedSampleSet<T> {
    type Member = bob_pipelines_sample::Sample<T>;
    fn into_members(self) -> Result<(Vec<Self::Member>, Arc<Meta>)> {
        (&self).into_members()
    }
}

impl<T: Send> SetSource<T> for &DelayedSampleSet<T> {
    type Member = bob_pipelines_sample::Sample<T>;
    fn into_members(self) -> Result<(Vec<Self::Member>, Arc<Meta>)> {
        let set = self.load().map_err(|source| Error::SetLoad {
            key: self.key().clone(),
            source: Box::new(source),
        })?;
        Ok(set.into_parts())
    }
}

/// Each set's key and attributes, and how many samples are its.
pub(crate) type Layout = Vec<(Arc<Meta>, usize)>;

pub(crate) fn flatten<T, S: SetSource<T>>(
    sets: impl IntoIterator<Item = S>,
) -> Result<(Layout, Vec<S::Member>)> {
    let mut layout = Vec::new();
    let mut members = Vec::new();
    for s in sets {
        let (inner, meta) = s.into_members()?;
        layout.push((meta, inner.len()));
        members.extend(inner);
    }
    Ok((layout, members))
}

pub(crate) fn regroup<O>(layout: Layout, outputs: Outputs<O>) -> SetOutputs<O> {
    let report = outputs.report.clone();
    let mut slots = outputs.into_iter();
    let mut failed: Vec<Failed> = Vec::new();
    let sets = layout
        .into_iter()
        .map(|(meta, len)| {
            let mut inner = Vec::with_capacity(len);
            for slot in slots.by_ref().take(len) {
                match slot {
                    Ok(s) => inner.push(s),
                    Err(f) => failed.push(f),
                }
            }
            SampleSet::from_meta(meta, inner)
        })
        .collect();
    SetOutputs {
        sets,
        failed,
        report,
    }
}
