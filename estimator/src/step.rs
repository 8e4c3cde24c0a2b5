//! Steps: an estimator plus the options that say how it meets samples.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use bob_pipelines_checkpoint::{Codec, MsgPack, default_codec};
use bob_pipelines_graph::{
    self as graph, AnyPartition, Counts, DataCodec, Failed, Model, ModelCodec, Slot, StepOp,
    StepOptions, data_codec, model_codec,
};
use bob_pipelines_sample::{BoxError, Meta, Sample, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::BatchCtx;
use crate::traits::{CodecName, map_extra};
use crate::{Batch, Error, Fit, Op, Result, SampleResult, Tags, Transformer};

/// A step's options from its estimator's own tags.
fn options_from_tags(tags: Tags) -> StepOptions {
    StepOptions {
        transform_extra: tags.transform_extra,
        fit_extra: tags.fit_extra,
        checkpoint: tags.checkpoint,
        ..Default::default()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Whether a step's estimator is a [`Transformer`] ([`Stateless`]) or a [`Fit`]
/// ([`Fitting`]); sealed.
pub trait Kind: sealed::Sealed + Send + Sync + 'static {
    /// The datum the estimator reads.
    type Input: Send + Sync + 'static;
    /// The datum it produces.
    type Output: Send + Sync + 'static;
    #[doc(hidden)]
    const REQUIRES_FIT: bool;
    #[doc(hidden)]
    fn type_name(&self) -> &'static str;
    #[doc(hidden)]
    fn tags(&self) -> Tags;
    #[doc(hidden)]
    fn fit_model(
        &self,
        batch: &Batch<'_, Self::Input>,
    ) -> std::result::Result<Arc<dyn Any + Send + Sync>, BoxError>;
    #[doc(hidden)]
    fn transform_with(
        &self,
        step: &str,
        model: Option<&Arc<dyn Any + Send + Sync>>,
        batch: &Batch<'_, Self::Input>,
    ) -> Result<Vec<SampleResult<Self::Output>>>;
    #[doc(hidden)]
    fn models(&self) -> Option<Arc<dyn ModelCodec>>;
}

/// Marks a step whose estimator is a [`Transformer`] (no fit).
#[derive(Debug, Clone)]
pub struct Stateless<T>(T);

/// Marks a step whose estimator is a [`Fit`]: fitted first, then its fitted
/// transformer transforms.
#[derive(Debug, Clone)]
pub struct Fitting<F>(F);

impl<T> sealed::Sealed for Stateless<T> {}
impl<F> sealed::Sealed for Fitting<F> {}

fn estimator_error(step: &str, op: Op, e: BoxError) -> Error {
    // Errors from `Batch::extra` already name the step and the sample: keep them.
    match e.downcast::<Error>() {
        Ok(e) if matches!(*e, Error::Extra { .. } | Error::UnmappedExtra { .. }) => *e,
        Ok(e) => Error::Estimator {
            step: step.to_owned(),
            op,
            source: e,
        },
        Err(source) => Error::Estimator {
            step: step.to_owned(),
            op,
            source,
        },
    }
}

impl<T: Transformer> Kind for Stateless<T> {
    type Input = T::Input;
    type Output = T::Output;
    const REQUIRES_FIT: bool = false;
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn tags(&self) -> Tags {
        self.0.tags()
    }
    fn fit_model(&self, _: &Batch<'_, T::Input>) -> std::result::Result<Model, BoxError> {
        Err("a stateless step has nothing to fit".into())
    }
    fn transform_with(
        &self,
        step: &str,
        _: Option<&Model>,
        batch: &Batch<'_, T::Input>,
    ) -> Result<Vec<SampleResult<T::Output>>> {
        self.0
            .transform(batch)
            .map_err(|e| estimator_error(step, Op::Transform, e))
    }
    fn models(&self) -> Option<Arc<dyn ModelCodec>> {
        None
    }
}

impl<F: Fit> Fitting<F> {
    fn fitted<'m>(&self, step: &str, model: Option<&'m Model>) -> Result<&'m F::Fitted> {
        let model = model.ok_or_else(|| graph::Error::NotFitted {
            step: step.to_owned(),
        })?;
        Ok(model.downcast_ref::<F::Fitted>().ok_or_else(|| {
            graph::Error::bug(format!(
                "the model of step `{step}` is not a {}",
                std::any::type_name::<F::Fitted>()
            ))
        })?)
    }
}

impl<F: Fit> Kind for Fitting<F> {
    type Input = F::Input;
    type Output = <F::Fitted as Transformer>::Output;
    const REQUIRES_FIT: bool = true;
    fn type_name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
    fn tags(&self) -> Tags {
        self.0.tags()
    }
    fn fit_model(&self, batch: &Batch<'_, F::Input>) -> std::result::Result<Model, BoxError> {
        Ok(Arc::new(self.0.fit(batch)?))
    }
    fn transform_with(
        &self,
        step: &str,
        model: Option<&Model>,
        batch: &Batch<'_, F::Input>,
    ) -> Result<Vec<SampleResult<Self::Output>>> {
        self.fitted(step, model)?
            .transform(batch)
            .map_err(|e| estimator_error(step, Op::Transform, e))
    }
    fn models(&self) -> Option<Arc<dyn ModelCodec>> {
        Some(model_codec::<F::Fitted>())
    }
}

/// Where a step reads its input: the sample's datum ([`FromData`], the default)
/// or one of its attributes ([`FromAttr`], bob's `input_attribute`).
pub trait InputAdapter<D, X>: Send + Sync + 'static {
    #[doc(hidden)]
    fn with_inputs<R>(
        &self,
        step: &str,
        samples: &[&Sample<D>],
        f: impl FnOnce(Vec<&X>, Vec<&Arc<Meta>>) -> R,
    ) -> Result<R>;
}

/// Where a step puts its output: a new datum ([`ToData`], the default) or an
/// attribute of the unchanged sample ([`ToAttr`], bob's `output_attribute`).
pub trait OutputAdapter<D, Y>: Send + Sync + 'static {
    /// The datum type of the step's output samples.
    type Out: Send + Sync + 'static;
    /// Whether the step's outputs can be checkpointed (not when they go to an
    /// attribute: the checkpoint holds data, and the datum did not change).
    #[doc(hidden)]
    const CHECKPOINTS: bool;
    /// The attribute the output goes to (none: it becomes the datum).
    #[doc(hidden)]
    fn attribute(&self) -> Option<&str>;
    #[doc(hidden)]
    fn put(&self, step: &str, sample: Sample<D>, y: Y) -> Result<Sample<Self::Out>>;
}

/// The step reads the sample's datum.
#[derive(Debug, Clone, Copy, Default)]
pub struct FromData;

/// The step reads a sample attribute instead of the datum.
#[derive(Debug, Clone)]
pub struct FromAttr(String);

/// The step's output becomes the sample's datum.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToData;

/// The step's output goes into a sample attribute; the datum passes through.
#[derive(Debug, Clone)]
pub struct ToAttr(String);

fn metas<'a, D>(samples: &[&'a Sample<D>]) -> Vec<&'a Arc<Meta>> {
    samples.iter().map(|s| s.meta()).collect()
}

impl<X: Send + Sync + 'static> InputAdapter<X, X> for FromData {
    fn with_inputs<R>(
        &self,
        _: &str,
        samples: &[&Sample<X>],
        f: impl FnOnce(Vec<&X>, Vec<&Arc<Meta>>) -> R,
    ) -> Result<R> {
        Ok(f(
            samples.iter().map(|s| s.data()).collect(),
            metas(samples),
        ))
    }
}

impl<D, X> InputAdapter<D, X> for FromAttr
where
    D: Send + Sync + 'static,
    X: DeserializeOwned + Send + Sync + 'static,
{
    fn with_inputs<R>(
        &self,
        step: &str,
        samples: &[&Sample<D>],
        f: impl FnOnce(Vec<&X>, Vec<&Arc<Meta>>) -> R,
    ) -> Result<R> {
        let owned = samples
            .iter()
            .map(|s| {
                s.attr::<X>(&self.0).map_err(|source| Error::InputAttr {
                    step: step.to_owned(),
                    source: Box::new(source),
                })
            })
            .collect::<Result<Vec<X>>>()?;
        Ok(f(owned.iter().collect(), metas(samples)))
    }
}

impl<D, Y: Send + Sync + 'static> OutputAdapter<D, Y> for ToData {
    type Out = Y;
    const CHECKPOINTS: bool = true;
    fn attribute(&self) -> Option<&str> {
        None
    }
    fn put(&self, _: &str, sample: Sample<D>, y: Y) -> Result<Sample<Y>> {
        Ok(sample.replace_data(y))
    }
}

impl<D, Y> OutputAdapter<D, Y> for ToAttr
where
    D: Send + Sync + 'static,
    Y: Serialize + Send + Sync + 'static,
{
    type Out = D;
    const CHECKPOINTS: bool = false;
    fn attribute(&self) -> Option<&str> {
        Some(&self.0)
    }
    fn put(&self, step: &str, sample: Sample<D>, y: Y) -> Result<Sample<D>> {
        let key = sample.key().clone();
        sample
            .try_with_attr(&self.0, &y)
            .map_err(|source| Error::OutputAttr {
                step: step.to_owned(),
                attribute: self.0.clone(),
                key,
                source: Box::new(source),
            })
    }
}

/// An estimator with the options that say how it meets samples: name, extra
/// arguments, input and output attribute, resource tags, checkpointing (bob's
/// `wrap(["sample"], estimator, **kwargs)`).
///
/// Most pipelines add estimators directly (`pipeline.then(MyTransformer)`); a
/// `Step` is for when options are needed:
///
/// ```
/// # use bob_pipelines_estimator::{Batch, BoxError, SampleResult, Transformer, Step};
/// # struct Annotate;
/// # impl Transformer for Annotate {
/// #     type Input = f64; type Output = f64;
/// #     fn transform(&self, b: &Batch<'_, f64>) -> Result<Vec<SampleResult<f64>>, BoxError> {
/// #         Ok(b.iter().map(|x| Ok(*x)).collect())
/// #     }
/// # }
/// let step = Step::new(Annotate)
///     .name("annotate")
///     .transform_extra("metadata", "metadata")
///     .transform_tag("io_big");
/// ```
///
/// Fit-only options (`fit_extra`, `fit_tag`) exist only on steps made with
/// [`Step::fit`], so they cannot be set where nothing would use them.
#[derive(Clone)]
pub struct Step<K, IA = FromData, OA = ToData> {
    kind: K,
    input: IA,
    output: OA,
    name: Option<String>,
    opts: StepOptions,
    /// The codec the estimator's tags name.
    codec_name: Option<CodecName>,
    /// The name the estimator's tags give, if any.
    default_name: Option<String>,
    /// An `Arc<dyn Codec<K::Output>>` chosen with [`Step::codec`].
    codec: Option<Arc<dyn Any + Send + Sync>>,
}

impl<K: Kind> Step<K> {
    /// A step with the estimator's own tags as its options.
    fn of(kind: K) -> Self {
        let tags = kind.tags();
        Step {
            codec_name: tags.codec,
            default_name: tags.name.clone(),
            opts: options_from_tags(tags),
            kind,
            input: FromData,
            output: ToData,
            name: None,
            codec: None,
        }
    }
}

impl<T: Transformer> Step<Stateless<T>> {
    /// A step that transforms with `transformer` (no fit).
    pub fn new(transformer: T) -> Self {
        Self::of(Stateless(transformer))
    }
}

impl<F: Fit> Step<Fitting<F>> {
    /// A step that fits `estimator`, then transforms with what it fitted.
    pub fn fit(estimator: F) -> Self {
        Self::of(Fitting(estimator))
    }
}

impl<K: Kind, IA, OA> Step<K, IA, OA> {
    /// Names the step (default: its estimator's type name, lower-cased, as
    /// scikit-learn's `make_pipeline`). Names key checkpoint folders and reports.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Transform receives sample attribute `attribute` as extra argument
    /// `argument` (bob's `transform_extra_arguments`); [`DATA`](crate::DATA)
    /// (`"data"`) names the sample's datum.
    #[must_use]
    pub fn transform_extra(mut self, argument: &str, attribute: &str) -> Self {
        map_extra(&mut self.opts.transform_extra, argument, attribute);
        self
    }

    /// Transform tasks of this step need this resource (bob's `transform_tag`).
    #[must_use]
    pub fn transform_tag(mut self, resource: &str) -> Self {
        self.opts.transform_tag = Some(resource.to_owned());
        self
    }

    /// The step's version, for changes to its code that the program cannot
    /// see: checkpoints written under another version are stale (see
    /// `Checkpoints::on_change`).
    #[must_use]
    pub fn version(mut self, version: &str) -> Self {
        self.opts.version = Some(version.to_owned());
        self
    }

    /// Declares a parameter of the estimator (a hyperparameter such as
    /// `alpha`): checkpoints written with another value are stale, and a
    /// run that stops on changes names it (`alpha: 1 → 2`).
    #[must_use]
    pub fn param(mut self, name: &str, value: impl std::fmt::Debug) -> Self {
        let value = format!("{value:?}");
        match self.opts.params.iter_mut().find(|(n, _)| n == name) {
            Some(p) => p.1 = value,
            None => self.opts.params.push((name.to_owned(), value)),
        }
        self
    }

    /// Whether this step's outputs are checkpointed (default: when the pipeline
    /// checkpoints).
    #[must_use]
    pub fn checkpoint(mut self, on: bool) -> Self {
        self.opts.checkpoint = Some(on);
        self
    }

    /// Reads the step's input from sample attribute `attribute` instead of the
    /// datum (bob's `input_attribute`); the datum's type no longer matters to
    /// this step.
    pub fn input_attribute(self, attribute: &str) -> Step<K, FromAttr, OA> {
        Step {
            kind: self.kind,
            input: FromAttr(attribute.to_owned()),
            output: self.output,
            name: self.name,
            opts: self.opts,
            codec_name: self.codec_name,
            default_name: self.default_name,
            codec: self.codec,
        }
    }

    /// Stores the step's output in sample attribute `attribute` and passes the
    /// datum through unchanged (bob's `output_attribute`).
    pub fn output_attribute(self, attribute: &str) -> Step<K, IA, ToAttr> {
        Step {
            kind: self.kind,
            input: self.input,
            output: ToAttr(attribute.to_owned()),
            name: self.name,
            opts: self.opts,
            codec_name: None,
            default_name: self.default_name,
            codec: None,
        }
    }

    /// Applies options given by name, as bob's `wrap(..., **kwargs)` does:
    /// `name`, `transform_extra_arguments`, `fit_extra_arguments`, `fit_tag`,
    /// `transform_tag`, `checkpoint`.
    ///
    /// # Errors
    /// [`Error::UnknownOption`] for a name not in that list, [`Error::UnusedOption`]
    /// for a fit option on a step that does not fit, [`Error::BadOption`] for a
    /// value of the wrong form.
    pub fn options(mut self, options: &crate::Options) -> Result<Self> {
        let step = self.display_name();
        for (option, value) in options.iter() {
            let bad = |reason: &str| Error::BadOption {
                step: step.clone(),
                option: option.to_owned(),
                reason: reason.to_owned(),
            };
            let text = || {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("expected a string"))
            };
            let pairs = || {
                rmpv::ext::from_value::<Vec<(String, String)>>(value.clone())
                    .map_err(|_| bad("expected a list of (argument, attribute) pairs"))
            };
            let fit_only = || {
                if K::REQUIRES_FIT {
                    Ok(())
                } else {
                    Err(Error::UnusedOption {
                        step: step.clone(),
                        option: option.to_owned(),
                        reason: "the step's estimator is a Transformer and is never fitted"
                            .to_owned(),
                    })
                }
            };
            match option {
                "name" => self.name = Some(text()?),
                "transform_extra_arguments" => {
                    for (a, b) in pairs()? {
                        map_extra(&mut self.opts.transform_extra, &a, &b);
                    }
                }
                "fit_extra_arguments" => {
                    fit_only()?;
                    for (a, b) in pairs()? {
                        map_extra(&mut self.opts.fit_extra, &a, &b);
                    }
                }
                "fit_tag" => {
                    fit_only()?;
                    self.opts.fit_tag = Some(text()?);
                }
                "transform_tag" => self.opts.transform_tag = Some(text()?),
                "checkpoint" => {
                    self.opts.checkpoint = Some(
                        value
                            .as_bool()
                            .ok_or_else(|| bad("expected true or false"))?,
                    );
                }
                _ => {
                    return Err(Error::UnknownOption {
                        step,
                        option: option.to_owned(),
                        valid: STEP_OPTIONS.iter().map(|s| (*s).to_owned()).collect(),
                    });
                }
            }
        }
        Ok(self)
    }

    fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.default_name.clone())
            .unwrap_or_else(|| short_type_name(self.kind.type_name()))
    }
}

impl<K: Kind, IA, OA> std::fmt::Debug for Step<K, IA, OA> {
    // Estimators need not implement Debug: show what the step knows of them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.display_name())
            .field("estimator", &self.kind.type_name())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl<K: Kind, IA> Step<K, IA, ToData> {
    /// Checkpoints this step's outputs with `codec` (default: `.npy` for
    /// `ndarray` arrays, MessagePack otherwise).
    #[must_use]
    pub fn codec(mut self, codec: impl Codec<K::Output>) -> Self {
        let codec: Arc<dyn Codec<K::Output>> = Arc::new(codec);
        self.codec = Some(Arc::new(codec));
        self
    }
}

const STEP_OPTIONS: &[&str] = &[
    "name",
    "transform_extra_arguments",
    "fit_extra_arguments",
    "fit_tag",
    "transform_tag",
    "checkpoint",
];

impl<F: Fit, IA, OA> Step<Fitting<F>, IA, OA> {
    /// Fit receives sample attribute `attribute` as extra argument `argument`
    /// (bob's `fit_extra_arguments`, e.g. `("y", "subject_id")`);
    /// [`DATA`](crate::DATA) (`"data"`) names the sample's datum.
    #[must_use]
    pub fn fit_extra(mut self, argument: &str, attribute: &str) -> Self {
        map_extra(&mut self.opts.fit_extra, argument, attribute);
        self
    }

    /// The fit task of this step needs this resource (bob's `fit_tag`, e.g.
    /// `"q_short_gpu"`).
    #[must_use]
    pub fn fit_tag(mut self, resource: &str) -> Self {
        self.opts.fit_tag = Some(resource.to_owned());
        self
    }
}

/// `my_crate::MyTransformer<f64>` → `mytransformer`, as scikit-learn names steps.
pub(crate) fn short_type_name(full: &str) -> String {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_lowercase()
}

/// A step ready to join a pipeline: its estimator, options and erased
/// operations, and how its outputs and model become bytes.
#[derive(Clone)]
pub struct BuiltStep {
    pub(crate) name: Option<String>,
    /// The name its estimator's tags give, used as its type name would be.
    pub(crate) default_name: Option<String>,
    pub(crate) type_name: &'static str,
    pub(crate) op: Arc<dyn StepOp>,
    pub(crate) output: Arc<dyn DataCodec>,
    pub(crate) attribute: Option<String>,
    pub(crate) models: Option<Arc<dyn ModelCodec>>,
    pub(crate) opts: StepOptions,
}

impl std::fmt::Debug for BuiltStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltStep")
            .field("name", &self.name)
            .field("type", &self.type_name)
            .field("opts", &self.opts)
            .finish()
    }
}

/// Markers that tell [`IntoStep`] implementations apart.
pub mod marker {
    /// A bare [`Transformer`](crate::Transformer).
    #[derive(Debug)]
    pub enum Transformer {}
    /// A bare [`Fit`](crate::Fit).
    #[derive(Debug)]
    pub enum Fit {}
    /// A [`Step`](crate::Step).
    #[derive(Debug)]
    pub enum Step {}
}

/// Anything that can become a pipeline step reading samples of datum `D`:
/// a [`Transformer`], a [`Fit`] or a [`Step`]. `M` only tells the
/// implementations apart; it is always inferred.
///
/// The compiler's message when a pipeline is given something else says what
/// the usual causes are, in the user's words (checked by the compile-fail
/// tests in `tests/compile_fail.rs`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a step that reads `{D}`, the output of the step before it",
    label = "not a step reading `{D}`",
    note = "a step is a `Transformer`, a `Fit` or a `Step` whose `Input` type is the output of the step before it, `{D}`: check the order of the steps and their `Input` types",
    note = "a step's output type must implement `serde::Serialize` and `serde::de::DeserializeOwned` (`#[derive(Serialize, Deserialize)]`): outputs are checkpointed and sent to workers",
    note = "a closure is not a step: wrap it in `Step::map(\"name\", |x: &{D}| ...)`, `Step::try_map` or `Step::batch`"
)]
pub trait IntoStep<D, M> {
    /// The datum type of the step's output samples.
    type Output: Send + Sync + 'static;
    /// The step, ready to join a pipeline.
    fn into_step(self) -> BuiltStep;
}

impl<T> IntoStep<T::Input, marker::Transformer> for T
where
    T: Transformer,
    T::Input: Serialize,
{
    type Output = T::Output;
    fn into_step(self) -> BuiltStep {
        IntoStep::<T::Input, marker::Step>::into_step(Step::new(self))
    }
}

impl<F> IntoStep<F::Input, marker::Fit> for F
where
    F: Fit,
    F::Input: Serialize,
{
    type Output = <F::Fitted as Transformer>::Output;
    fn into_step(self) -> BuiltStep {
        IntoStep::<F::Input, marker::Step>::into_step(Step::fit(self))
    }
}

impl<D, K, IA, OA> IntoStep<D, marker::Step> for Step<K, IA, OA>
where
    D: Serialize + Send + Sync + 'static,
    K: Kind,
    IA: InputAdapter<D, K::Input>,
    OA: OutputAdapter<D, K::Output>,
    OA::Out: Serialize + DeserializeOwned,
{
    type Output = OA::Out;
    fn into_step(self) -> BuiltStep {
        let chosen = self
            .codec
            .as_ref()
            .and_then(|c| c.downcast_ref::<Arc<dyn Codec<OA::Out>>>().cloned());
        let codec: Arc<dyn Codec<OA::Out>> = chosen.unwrap_or_else(|| match self.codec_name {
            Some(CodecName::MsgPack) => Arc::new(MsgPack),
            _ => default_codec::<OA::Out>(),
        });
        BuiltStep {
            name: self.name,
            default_name: self.default_name,
            type_name: self.kind.type_name(),
            opts: self.opts,
            output: data_codec(codec),
            attribute: self.output.attribute().map(str::to_owned),
            models: self.kind.models(),
            op: Arc::new(Erased {
                kind: self.kind,
                input: self.input,
                output: self.output,
                _data: PhantomData::<fn(D)>,
            }),
        }
    }
}

/// Sample `i`'s datum as MessagePack: what an extra argument that names the
/// datum (`"data"`) reads, only when one does.
fn encode_datum<'a, D: Serialize + Sync>(
    samples: &'a [&'a Sample<D>],
) -> impl Fn(usize) -> std::result::Result<Vec<u8>, String> + Sync + 'a {
    |i| rmp_serde::to_vec(samples[i].data()).map_err(|e| e.to_string())
}

/// A step's fit and transform, its types erased once for the executors.
struct Erased<K, IA, OA, D> {
    kind: K,
    input: IA,
    output: OA,
    _data: PhantomData<fn(D)>,
}

fn downcast<T: 'static>(step: &str, p: AnyPartition) -> graph::Result<Vec<Slot<T>>> {
    p.downcast::<Vec<Slot<T>>>().map(|b| *b).map_err(|_| {
        graph::Error::bug(format!(
            "step `{step}` was given a partition that is not a {}",
            std::any::type_name::<Vec<Slot<T>>>()
        ))
    })
}

/// An error of this crate as a step's error in a run: errors the run itself
/// raised (a missing model) go back as they were.
fn step_error(e: Error) -> graph::Error {
    match e {
        Error::Run(e) => e,
        e => graph::Error::Step(Box::new(e)),
    }
}

impl<D, K, IA, OA> StepOp for Erased<K, IA, OA, D>
where
    D: Serialize + Send + Sync + 'static,
    K: Kind,
    IA: InputAdapter<D, K::Input>,
    OA: OutputAdapter<D, K::Output>,
{
    fn fit(
        &self,
        name: &str,
        opts: &StepOptions,
        inputs: &[&AnyPartition],
    ) -> graph::Result<Model> {
        let parts = inputs
            .iter()
            .map(|p| {
                p.downcast_ref::<Vec<Slot<D>>>().ok_or_else(|| {
                    graph::Error::bug(format!(
                        "step `{name}` was given a partition that is not a {}",
                        std::any::type_name::<Vec<Slot<D>>>()
                    ))
                })
            })
            .collect::<graph::Result<Vec<_>>>()?;
        // Sized at once: a fit may read millions of samples.
        let mut valid: Vec<&Sample<D>> = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            valid.extend(part.iter().filter_map(|s| s.as_ref().ok()));
        }
        self.with_batch(name, (Op::Fit, &opts.fit_extra), &valid, |batch| {
            self.kind.fit_model(batch)
        })
        .map_err(step_error)?
        .map_err(|e| step_error(estimator_error(name, Op::Fit, e)))
    }

    fn transform(
        &self,
        name: &str,
        opts: &StepOptions,
        model: Option<&Model>,
        input: AnyPartition,
    ) -> graph::Result<(AnyPartition, Counts)> {
        self.transform_typed(name, opts, model, downcast::<D>(name, input)?)
            .map_err(step_error)
    }
}

impl<D, K, IA, OA> Erased<K, IA, OA, D>
where
    D: Serialize + Send + Sync + 'static,
    K: Kind,
    IA: InputAdapter<D, K::Input>,
    OA: OutputAdapter<D, K::Output>,
{
    /// `f` on the batch of `valid` samples as step `name` sees them in
    /// operation `op`, with its extra-argument mapping.
    fn with_batch<R>(
        &self,
        name: &str,
        (op, extra): (Op, &[(String, String)]),
        valid: &[&Sample<D>],
        f: impl FnOnce(&Batch<'_, K::Input>) -> R,
    ) -> Result<R> {
        let datum = encode_datum(valid);
        let ctx = BatchCtx {
            step: name,
            op,
            extra,
            datum: &datum,
        };
        self.input
            .with_inputs(name, valid, |data, metas| f(&Batch::new(data, metas, &ctx)))
    }

    fn transform_typed(
        &self,
        name: &str,
        opts: &StepOptions,
        model: Option<&Model>,
        input: Vec<Slot<D>>,
    ) -> Result<(AnyPartition, Counts)> {
        let valid: Vec<&Sample<D>> = input.iter().filter_map(|s| s.as_ref().ok()).collect();
        let expected = valid.len();
        let results = if valid.is_empty() {
            // Nothing to do; the estimator is not asked to handle an empty batch.
            Vec::new()
        } else {
            self.with_batch(
                name,
                (Op::Transform, &opts.transform_extra),
                &valid,
                |batch| self.kind.transform_with(name, model, batch),
            )??
        };
        if results.len() != expected {
            return Err(Error::OutputCount {
                step: name.to_owned(),
                expected,
                got: results.len(),
            });
        }
        drop(valid);
        let mut failed = 0;
        let mut results = results.into_iter();
        let mut out: Vec<Slot<OA::Out>> = Vec::with_capacity(input.len());
        for slot in input {
            let sample = match slot {
                Ok(s) => s,
                Err(f) => {
                    out.push(Err(f));
                    continue;
                }
            };
            match results.next() {
                Some(Ok(y)) => out.push(Ok(self.output.put(name, sample, y)?)),
                Some(Err(why)) => {
                    failed += 1;
                    out.push(Err(Failed::new(sample.key().clone(), name, why.reason())));
                }
                None => unreachable!("result count was checked against the valid samples"),
            }
        }
        Ok((
            Box::new(out),
            Counts {
                samples: expected,
                failed,
            },
        ))
    }
}

/// Options given by name, for configuration-driven code (bob's `wrap` keyword
/// arguments); see [`Step::options`].
///
/// ```
/// use bob_pipelines_estimator::Options;
///
/// let opts = Options::new()
///     .set("transform_tag", "io_big")
///     .set_serde("transform_extra_arguments", &[("metadata", "metadata")])?;
/// assert_eq!(opts.len(), 2);
/// # Ok::<(), bob_pipelines_estimator::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    entries: Vec<(String, Value)>,
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// With an option set.
    #[must_use]
    pub fn set(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_owned(), value.into()));
        self
    }

    /// With an option set from any serde value.
    ///
    /// # Errors
    /// When the value cannot be represented.
    pub fn set_serde<V: Serialize + ?Sized>(self, name: &str, value: &V) -> Result<Self> {
        Ok(self.set(name, bob_pipelines_sample::to_value(name, value)?))
    }

    /// How many options.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The options, in the order they were set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }
}
