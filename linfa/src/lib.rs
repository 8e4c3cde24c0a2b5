//! [linfa](https://docs.rs/linfa) estimators as pipeline steps, with no glue
//! of your own: linfa is Rust's scikit-learn, and this crate is bob's
//! `wrap(["sample"], estimator)` for it.
//!
//! Samples carry one feature vector each (`Array1<f64>`); a batch becomes the
//! `n × d` records linfa fits on. Three adapters cover linfa's three ways of
//! using a fitted model:
//!
//! | adapter | fits | the fitted model | e.g. |
//! |---|---|---|---|
//! | [`transform`] | records | `linfa::traits::Transformer` (array → array) | `LinearScaler::standard()` |
//! | [`project`] | records | predicts an array (array → array) | `Pca::params(2)` |
//! | [`classify`] | records and labels | predicts a label per sample | `MultiLogisticRegression::default()` |
//!
//! Labels come from a sample attribute, as bob's
//! `fit_extra_arguments=[("y", "target")]`:
//! `classify::<_, usize, _>(params).labels_from("target")`, where the label
//! type (`usize`, `String`, any `Ord` serde type) is the step's output.
//! Fitted models are serde data (enable linfa's `serde` features), so they
//! are checkpointed like any other model. A fitted model given samples of
//! another width fails the batch with the step's name and both widths
//! (linfa itself would panic).
//!
//! ```
//! use bob_pipelines_estimator::{Pipeline, Step, InMemory};
//! use bob_pipelines_linfa::{classify, project, transform};
//! use bob_pipelines_sample::Sample;
//! use linfa_logistic::MultiLogisticRegression;
//! use linfa_preprocessing::linear_scaling::LinearScaler;
//! use linfa_reduction::Pca;
//! use ndarray::array;
//!
//! let samples: Vec<_> = (0..40)
//!     .map(|i| {
//!         let c = (i % 2) as f64;
//!         let x = array![c * 3.0 + (i as f64 * 0.37).sin(), 1.0 - c + (i as f64).cos(), c];
//!         Sample::new(format!("s{i}"), x).with_attr("target", i % 2)
//!     })
//!     .collect();
//! let mut pipeline = Pipeline::new()
//!     .then(Step::fit(transform(LinearScaler::standard())).name("scaler"))
//!     .then(Step::fit(project(Pca::params(2))).name("pca"))
//!     .then(Step::fit(classify::<_, usize, _>(MultiLogisticRegression::default()).labels_from("target")).name("logistic"));
//! let out = pipeline.fit_transform(samples).compute(&InMemory)?;
//! let right = out.samples().filter(|s| *s.data() == s.attr::<usize>("target").unwrap()).count();
//! assert!(right >= 36, "{right} of 40");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::marker::PhantomData;

use bob_pipelines_estimator::{Batch, BoxError, Fit, SampleResult, Tags, Transformer};
use linfa::DatasetBase;
use linfa::traits::{Fit as LinfaFit, PredictInplace, Transformer as LinfaTransformer};
use ndarray::{Array1, Array2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The extra argument a [`classify`] step reads its labels from.
pub const LABELS: &str = "y";

/// A feature vector per sample.
pub type Features = Array1<f64>;

/// The batch's feature vectors as linfa's records (`n × d`).
fn records(batch: &Batch<'_, Features>) -> Result<Array2<f64>, BoxError> {
    Ok(batch.to_array()?)
}

/// Fails when the records are not as wide as the model was fitted for.
fn check_width(batch: &Batch<'_, Features>, x: &Array2<f64>, width: usize) -> Result<(), BoxError> {
    if x.ncols() == width || x.nrows() == 0 {
        return Ok(());
    }
    Err(format!(
        "step `{}` was fitted on {width} features per sample, but sample `{}` has {}: \
         give it data of the width it was fitted on, or fit it again",
        batch.step(),
        batch.key(0),
        x.ncols()
    )
    .into())
}

/// A linfa estimator's name from its parameters' type, as scikit-learn names
/// steps: `LinearScalerParams<f64>` → `linearscaler`, `PcaParams` → `pca`.
fn estimator_name<P>() -> String {
    let full = std::any::type_name::<P>();
    let base = full.split('<').next().unwrap_or(full);
    let name = base.rsplit("::").next().unwrap_or(base).to_lowercase();
    let name = name.strip_suffix("validparams").unwrap_or(&name);
    let name = name.strip_suffix("params").unwrap_or(name);
    if name.is_empty() {
        "linfa".to_owned()
    } else {
        name.to_owned()
    }
}

fn fit_error<E: std::fmt::Display>(batch: &Batch<'_, Features>, e: E) -> BoxError {
    format!("linfa could not fit step `{}`: {e}", batch.step()).into()
}

/// An unsupervised linfa estimator; `How` says how its fitted model is
/// used: [`Transforms`] (see [`transform`]) or [`Projects`] (see [`project`]).
pub struct Unsupervised<P, E, How> {
    params: P,
    how: PhantomData<fn() -> (E, How)>,
}

/// A linfa estimator whose fitted model transforms records (e.g.
/// `LinearScaler::standard()`, `min_max()`): see [`transform`].
pub type Transform<P, E> = Unsupervised<P, E, Transforms>;

/// A linfa estimator whose fitted model predicts new records (e.g.
/// `Pca::params(n)`): see [`project`].
pub type Project<P, E> = Unsupervised<P, E, Projects>;

/// A supervised linfa estimator whose fitted model predicts a label per
/// sample (e.g. `MultiLogisticRegression`): see [`classify`].
pub struct Classify<P, C, E> {
    params: P,
    labels: Option<String>,
    error: PhantomData<fn() -> (C, E)>,
}

// linfa's parameter types need not implement Debug: show the estimator's type.
impl<P, E, How> std::fmt::Debug for Unsupervised<P, E, How> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsupervised")
            .field("params", &std::any::type_name::<P>())
            .finish_non_exhaustive()
    }
}

impl<P, C, E> std::fmt::Debug for Classify<P, C, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classify")
            .field("params", &std::any::type_name::<P>())
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Fits `params` on the samples' features; the fitted model's
/// `linfa::traits::Transformer` maps each sample's features to new ones.
pub fn transform<P, E>(params: P) -> Transform<P, E>
where
    P: LinfaFit<Array2<f64>, Array1<()>, E>,
    E: std::error::Error + From<linfa::Error>,
{
    Unsupervised {
        params,
        how: PhantomData,
    }
}

/// Fits `params` on the samples' features; the fitted model's prediction
/// (an array per sample, as PCA's projection) is each sample's output.
pub fn project<P, E>(params: P) -> Project<P, E>
where
    P: LinfaFit<Array2<f64>, Array1<()>, E>,
    E: std::error::Error + From<linfa::Error>,
{
    Unsupervised {
        params,
        how: PhantomData,
    }
}

/// Fits `params` on the samples' features and labels (extra argument
/// [`LABELS`]; map it with [`Classify::labels_from`]); the fitted model
/// predicts each sample's label.
pub fn classify<P, C, E>(params: P) -> Classify<P, C, E>
where
    P: LinfaFit<Array2<f64>, Array1<C>, E>,
    E: std::error::Error + From<linfa::Error>,
{
    Classify {
        params,
        labels: None,
        error: PhantomData,
    }
}

impl<P, C, E> Classify<P, C, E> {
    /// Takes the labels from sample attribute `attribute` (bob's
    /// `fit_extra_arguments=[("y", attribute)]`).
    #[must_use]
    pub fn labels_from(mut self, attribute: &str) -> Self {
        self.labels = Some(attribute.to_owned());
        self
    }
}

/// A fitted linfa model with the width it was fitted on: a checkpointed
/// model (serde), and a pipeline step.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fitted<M, How> {
    /// The linfa model.
    pub model: M,
    /// Features per sample it was fitted on.
    pub width: usize,
    #[serde(skip)]
    how: PhantomData<fn() -> How>,
}

impl<M, How> Fitted<M, How> {
    fn new(model: M, width: usize) -> Self {
        Fitted {
            model,
            width,
            how: PhantomData,
        }
    }
}

/// How a [`Fitted`] model of [`transform`] is applied.
#[derive(Debug)]
pub enum Transforms {}
/// How a [`Fitted`] model of [`project`] is applied.
#[derive(Debug)]
pub enum Projects {}
/// How a [`Fitted`] model of [`classify`] is applied, with its label type.
#[derive(Debug)]
pub struct Classifies<C>(PhantomData<fn() -> C>);

fn rows(y: &Array2<f64>) -> Vec<SampleResult<Features>> {
    y.rows().into_iter().map(|r| Ok(r.to_owned())).collect()
}

impl<P, E, How> Fit for Unsupervised<P, E, How>
where
    P: LinfaFit<Array2<f64>, Array1<()>, E> + Send + Sync + 'static,
    P::Object: Serialize + DeserializeOwned + Send + Sync + 'static,
    Fitted<P::Object, How>: Transformer<Input = Features>,
    E: std::error::Error + From<linfa::Error> + 'static,
    How: 'static,
{
    type Input = Features;
    type Fitted = Fitted<P::Object, How>;

    fn fit(&self, batch: &Batch<'_, Features>) -> Result<Self::Fitted, BoxError> {
        let x = records(batch)?;
        let width = x.ncols();
        let model = self
            .params
            .fit(&DatasetBase::from(x))
            .map_err(|e| fit_error(batch, e))?;
        Ok(Fitted::new(model, width))
    }

    fn tags(&self) -> Tags {
        Tags::new().name(&estimator_name::<P>())
    }
}

impl<M> Transformer for Fitted<M, Transforms>
where
    M: LinfaTransformer<Array2<f64>, Array2<f64>> + Send + Sync + 'static,
{
    type Input = Features;
    type Output = Features;

    fn transform(
        &self,
        batch: &Batch<'_, Features>,
    ) -> Result<Vec<SampleResult<Features>>, BoxError> {
        let x = records(batch)?;
        check_width(batch, &x, self.width)?;
        Ok(rows(&self.model.transform(x)))
    }
}

impl<M> Transformer for Fitted<M, Projects>
where
    M: PredictInplace<Array2<f64>, Array2<f64>> + Send + Sync + 'static,
{
    type Input = Features;
    type Output = Features;

    fn transform(
        &self,
        batch: &Batch<'_, Features>,
    ) -> Result<Vec<SampleResult<Features>>, BoxError> {
        let x = records(batch)?;
        check_width(batch, &x, self.width)?;
        let mut y = self.model.default_target(&x);
        self.model.predict_inplace(&x, &mut y);
        Ok(rows(&y))
    }
}

impl<P, C, E> Fit for Classify<P, C, E>
where
    P: LinfaFit<Array2<f64>, Array1<C>, E> + Send + Sync + 'static,
    P::Object: PredictInplace<Array2<f64>, Array1<C>>
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    C: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    E: std::error::Error + From<linfa::Error> + 'static,
{
    type Input = Features;
    type Fitted = Fitted<P::Object, Classifies<C>>;

    fn fit(&self, batch: &Batch<'_, Features>) -> Result<Self::Fitted, BoxError> {
        let x = records(batch)?;
        let width = x.ncols();
        let y: Array1<C> = Array1::from(batch.extra::<C>(LABELS)?);
        let model = self
            .params
            .fit(&DatasetBase::new(x, y))
            .map_err(|e| fit_error(batch, e))?;
        Ok(Fitted::new(model, width))
    }

    fn tags(&self) -> Tags {
        let tags = Tags::new().name(&estimator_name::<P>());
        match &self.labels {
            Some(attribute) => tags.fit_extra(LABELS, attribute),
            None => tags,
        }
    }
}

impl<M, C> Transformer for Fitted<M, Classifies<C>>
where
    M: PredictInplace<Array2<f64>, Array1<C>> + Send + Sync + 'static,
    C: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Input = Features;
    type Output = C;

    fn transform(&self, batch: &Batch<'_, Features>) -> Result<Vec<SampleResult<C>>, BoxError> {
        let x = records(batch)?;
        check_width(batch, &x, self.width)?;
        let mut y = self.model.default_target(&x);
        self.model.predict_inplace(&x, &mut y);
        Ok(y.into_iter().map(Ok).collect())
    }
}
