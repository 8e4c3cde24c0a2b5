//! The estimator traits: what a user implements.

use std::fmt;

use bob_pipelines_sample::BoxError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Batch;

/// Why one sample failed: bob's `None` output, with a reason.
///
/// Any error converts into it, so `?` works inside per-sample code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    reason: String,
}

impl Failure {
    /// A failure with this reason.
    pub fn new(reason: impl fmt::Display) -> Self {
        Failure {
            reason: reason.to_string(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::new(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The result for one sample: its output, or why it failed.
pub type SampleResult<T> = Result<T, Failure>;

/// Defaults an estimator declares about itself: bob's `get_bob_tags`.
///
/// Step options given on the pipeline override them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    pub(crate) transform_extra: Vec<(String, String)>,
    pub(crate) fit_extra: Vec<(String, String)>,
    pub(crate) checkpoint: Option<bool>,
    pub(crate) codec: Option<CodecName>,
    pub(crate) name: Option<String>,
}

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// The step's default name, instead of the estimator's lower-cased type
    /// name: what an adapter gives, to be named after what it wraps.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Transform receives sample attribute `attribute` as extra argument `argument`
    /// (bob's `bob_transform_extra_input`); [`DATA`](crate::DATA) names the datum.
    #[must_use]
    pub fn transform_extra(mut self, argument: &str, attribute: &str) -> Self {
        map_extra(&mut self.transform_extra, argument, attribute);
        self
    }

    /// Fit receives sample attribute `attribute` as extra argument `argument`
    /// (bob's `bob_fit_extra_input`); [`DATA`](crate::DATA) names the datum.
    #[must_use]
    pub fn fit_extra(mut self, argument: &str, attribute: &str) -> Self {
        map_extra(&mut self.fit_extra, argument, attribute);
        self
    }

    /// The codec of the step's checkpoints (bob's `bob_features_save_fn`).
    #[must_use]
    pub fn codec(mut self, codec: CodecName) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Whether the step's outputs are checkpointed (bob's `bob_checkpoint_features`).
    #[must_use]
    pub fn checkpoint(mut self, on: bool) -> Self {
        self.checkpoint = Some(on);
        self
    }
}

/// A step that maps each sample's datum to a new one, with no fit: scikit-learn's
/// `transform`, on a whole [`Batch`] at a time.
///
/// Return one result per sample of the batch, in order. `Err(Failure)` for one
/// sample fails that sample only: it keeps its position, later steps skip it, and
/// the run reports its key and reason. An `Err` from `transform` itself fails the
/// run, naming the step.
///
/// ```
/// use bob_pipelines_estimator::{Batch, BoxError, SampleResult, Transformer};
///
/// struct Double;
/// impl Transformer for Double {
///     type Input = f64;
///     type Output = f64;
///     fn transform(&self, batch: &Batch<'_, f64>) -> Result<Vec<SampleResult<f64>>, BoxError> {
///         Ok(batch.iter().map(|x| Ok(2.0 * x)).collect())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Transformer`",
    label = "not a `Transformer`",
    note = "implement `Transformer` for `{Self}` (or `Fit`, for a step that learns from data)",
    note = "a closure becomes a step with `Step::map(\"name\", |x: &T| ...)`, `Step::try_map` or `Step::batch`"
)]
pub trait Transformer: Send + Sync + 'static {
    /// The datum it reads.
    type Input: Send + Sync + 'static;
    /// The datum it produces. It is serde because outputs are checkpointed
    /// and sent between processes; a type without it is refused here, where
    /// the compiler can say so (`#[derive(Serialize, Deserialize)]`).
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// One result per sample of `batch`, in order.
    ///
    /// # Errors
    /// Any error fails the whole batch and the run.
    fn transform(
        &self,
        batch: &Batch<'_, Self::Input>,
    ) -> Result<Vec<SampleResult<Self::Output>>, BoxError>;

    /// Defaults this transformer declares (extra arguments, checkpointing).
    fn tags(&self) -> Tags {
        Tags::default()
    }
}

/// An estimator that must see data before it can transform: scikit-learn's `fit`.
///
/// As in linfa, fitting does not mutate the estimator but produces a separate
/// fitted transformer, so an unfitted model cannot be used by mistake, and the
/// fitted one is plain serde data: it is saved as a model checkpoint and sent to
/// the workers that transform.
///
/// ```
/// use bob_pipelines_estimator::{Batch, BoxError, Fit, SampleResult, Transformer};
/// use serde::{Deserialize, Serialize};
///
/// /// Learns the mean and subtracts it.
/// struct Center;
/// #[derive(Serialize, Deserialize)]
/// struct Centered { mean: f64 }
///
/// impl Fit for Center {
///     type Input = f64;
///     type Fitted = Centered;
///     fn fit(&self, batch: &Batch<'_, f64>) -> Result<Centered, BoxError> {
///         Ok(Centered { mean: batch.iter().sum::<f64>() / batch.len() as f64 })
///     }
/// }
/// impl Transformer for Centered {
///     type Input = f64;
///     type Output = f64;
///     fn transform(&self, batch: &Batch<'_, f64>) -> Result<Vec<SampleResult<f64>>, BoxError> {
///         Ok(batch.iter().map(|x| Ok(x - self.mean)).collect())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Fit`",
    label = "not a `Fit`",
    note = "implement `Fit` for `{Self}`: its `fit` returns the fitted `Transformer`"
)]
pub trait Fit: Send + Sync + 'static {
    /// The datum it learns from (and its fitted transformer reads).
    type Input: Send + Sync + 'static;
    /// What fitting produces.
    type Fitted: Transformer<Input = Self::Input> + Serialize + DeserializeOwned;

    /// Learns from the valid samples of the step's input (failed ones are left out).
    ///
    /// # Errors
    /// Any error fails the run, naming the step.
    fn fit(&self, batch: &Batch<'_, Self::Input>) -> Result<Self::Fitted, BoxError>;

    /// Defaults this estimator declares (extra arguments, checkpointing).
    fn tags(&self) -> Tags {
        Tags::default()
    }
}

/// A checkpoint codec named in an estimator's [`Tags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecName {
    /// NumPy's `.npy` (for `ndarray` array outputs; others use MessagePack).
    Npy,
    /// MessagePack, for any serde output.
    MsgPack,
}

pub(crate) fn map_extra(list: &mut Vec<(String, String)>, argument: &str, attribute: &str) {
    match list.iter_mut().find(|(a, _)| a == argument) {
        Some(entry) => entry.1 = attribute.to_owned(),
        None => list.push((argument.to_owned(), attribute.to_owned())),
    }
}
