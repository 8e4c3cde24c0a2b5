//! One step of a program: its erased operations, options and model.

use std::sync::Arc;

use crate::data::{AnyPartition, Counts, DataCodec, Model, ModelCodec};
use crate::{Error, Result};

/// How a step meets samples: extra arguments, resource tags, checkpointing.
/// Set by the pipeline author on a step (or by the estimator's own tags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOptions {
    /// `(argument, attribute)` pairs passed to transform.
    pub transform_extra: Vec<(String, String)>,
    /// `(argument, attribute)` pairs passed to fit.
    pub fit_extra: Vec<(String, String)>,
    /// The resource the fit task needs.
    pub fit_tag: Option<String>,
    /// The resource the transform tasks need.
    pub transform_tag: Option<String>,
    /// Whether the step asked for (`Some(true)`) or against checkpoints.
    pub checkpoint: Option<bool>,
    /// The version its author gave it, for code changes the program cannot
    /// see: a new version makes its checkpoints stale.
    pub version: Option<String>,
    /// Parameters its author declared (name, value as text): a change makes
    /// its checkpoints stale.
    pub params: Vec<(String, String)>,
}

impl StepOptions {
    /// What of the options changes what the step computes, as text for its
    /// lineage stamp (resource tags and checkpointing do not).
    pub fn lineage(&self) -> String {
        let pairs = |l: &[(String, String)]| {
            l.iter()
                .map(|(a, b)| format!("{a}={b}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "transform_extra=[{}] fit_extra=[{}] params=[{}]",
            pairs(&self.transform_extra),
            pairs(&self.fit_extra),
            pairs(&self.params)
        )
    }
}

/// A step's fit and transform with its types erased: what executors run.
/// Partitions and models are `Any`; the typed pipeline guarantees they fit,
/// and a mismatch is an error, never a panic.
pub trait StepOp: Send + Sync {
    /// Fits on the valid samples of all `inputs` partitions.
    ///
    /// # Errors
    /// The estimator's error ([`Error::Step`]), naming the step.
    fn fit(&self, name: &str, opts: &StepOptions, inputs: &[&AnyPartition]) -> Result<Model>;

    /// Transforms one partition.
    ///
    /// # Errors
    /// The estimator's error ([`Error::Step`]), naming the step (and the
    /// sample where one is at fault); [`Error::NotFitted`] without a model.
    fn transform(
        &self,
        name: &str,
        opts: &StepOptions,
        model: Option<&Model>,
        input: AnyPartition,
    ) -> Result<(AnyPartition, Counts)>;
}

/// The extension of the checkpoint files of a step whose output goes to an
/// attribute: the attribute's value, MessagePack.
pub const ATTR_EXT: &str = ".attr.msgpack";

/// One step of a program: its name, erased operations, how its outputs and
/// model become bytes, its options and its current model.
#[derive(Clone)]
pub struct ProgramStep {
    pub(crate) name: String,
    type_name: &'static str,
    op: Arc<dyn StepOp>,
    output: Arc<dyn DataCodec>,
    attribute: Option<String>,
    models: Option<Arc<dyn ModelCodec>>,
    pub(crate) opts: StepOptions,
    pub(crate) model: Option<Model>,
}

impl std::fmt::Debug for ProgramStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgramStep")
            .field("name", &self.name)
            .field("type", &self.type_name)
            .field("output", &self.output)
            .field("opts", &self.opts)
            .field("fitted", &self.model.is_some())
            .finish()
    }
}

impl ProgramStep {
    /// A stateless step named `name` running `op` (estimator `type_name`),
    /// whose outputs are data of `output`'s type, checkpointable.
    pub fn new(
        name: impl Into<String>,
        type_name: &'static str,
        op: Arc<dyn StepOp>,
        output: Arc<dyn DataCodec>,
    ) -> Self {
        ProgramStep {
            name: name.into(),
            type_name,
            op,
            output,
            attribute: None,
            models: None,
            opts: StepOptions::default(),
            model: None,
        }
    }

    /// The step is fitted, and its models become bytes through `models`.
    #[must_use]
    pub fn fitted(mut self, models: Arc<dyn ModelCodec>) -> Self {
        self.models = Some(models);
        self
    }

    /// Its output goes to sample attribute `name` (none: it becomes the
    /// datum). Its checkpoint then holds the attribute, one file per sample.
    #[must_use]
    pub fn attribute(mut self, name: Option<String>) -> Self {
        self.attribute = name;
        self
    }

    /// With these options.
    #[must_use]
    pub fn options(mut self, opts: StepOptions) -> Self {
        self.opts = opts;
        self
    }

    /// With the model it has before the run.
    #[must_use]
    pub fn model(mut self, model: Option<Model>) -> Self {
        self.model = model;
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The estimator's type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether the step is fitted before it transforms.
    pub fn requires_fit(&self) -> bool {
        self.models.is_some()
    }

    /// The step's options.
    pub fn opts(&self) -> &StepOptions {
        &self.opts
    }

    /// How the step's outputs become bytes: files and the wire.
    pub fn output(&self) -> &dyn DataCodec {
        &*self.output
    }

    /// The attribute its output goes to, if it does not become the datum.
    pub fn output_attribute(&self) -> Option<&str> {
        self.attribute.as_deref()
    }

    /// The extension of the step's checkpoint files: its output's, or
    /// [`ATTR_EXT`] when its output goes to an attribute.
    pub fn checkpoint_extension(&self) -> Option<&'static str> {
        Some(match self.attribute {
            Some(_) => ATTR_EXT,
            None => self.output.extension(),
        })
    }

    /// The model the step has before the run.
    pub fn current_model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Fits on all `inputs` partitions.
    ///
    /// # Errors
    /// The estimator's error, naming the step.
    pub fn fit(&self, inputs: &[&AnyPartition]) -> Result<Model> {
        self.op.fit(&self.name, &self.opts, inputs)
    }

    /// Transforms one partition with `model` (the one fitted in this run, or the
    /// step's own).
    ///
    /// # Errors
    /// The estimator's error, naming the step.
    pub fn transform(
        &self,
        model: Option<&Model>,
        input: AnyPartition,
    ) -> Result<(AnyPartition, Counts)> {
        self.op.transform(&self.name, &self.opts, model, input)
    }

    fn model_codec(&self) -> Result<&dyn ModelCodec> {
        self.models.as_deref().ok_or_else(|| Error::Model {
            step: self.name.clone(),
            action: "used",
            reason: "the step is stateless and has no model".to_owned(),
        })
    }

    /// A model as MessagePack.
    ///
    /// # Errors
    /// [`Error::Model`].
    pub fn encode_model(&self, model: &Model) -> Result<Vec<u8>> {
        self.model_codec()?.encode(&self.name, model)
    }

    /// A model from MessagePack.
    ///
    /// # Errors
    /// [`Error::Model`].
    pub fn decode_model(&self, bytes: &[u8]) -> Result<Model> {
        self.model_codec()?.decode(&self.name, bytes)
    }
}
