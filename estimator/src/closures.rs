//! Steps made of a closure: scikit-learn's `FunctionTransformer`, over samples.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::step::{Stateless, Step};
use crate::{Batch, BoxError, Failure, SampleResult, Transformer};

/// A transformer made of a closure; see [`Step::map`], [`Step::try_map`] and
/// [`Step::batch`].
pub struct FnStep<T, U, F, How> {
    f: F,
    _types: Types<T, U, How>,
}

/// The types a closure step reads, writes, and how it applies its closure.
type Types<T, U, How> = PhantomData<fn(&T) -> (U, How)>;

impl<T, U, F, How> FnStep<T, U, F, How> {
    fn of(f: F) -> Self {
        FnStep {
            f,
            _types: PhantomData,
        }
    }
}

impl<T, U, F, How> fmt::Debug for FnStep<T, U, F, How> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnStep")
            .field("input", &std::any::type_name::<T>())
            .field("output", &std::any::type_name::<U>())
            .finish_non_exhaustive()
    }
}

/// How a [`FnStep`] applies its closure.
pub mod how {
    /// To each datum: `Fn(&T) -> U`.
    #[derive(Debug)]
    pub enum Map {}
    /// To each datum, failing the sample on `Err`: `Fn(&T) -> Result<U, E>`.
    #[derive(Debug)]
    pub enum TryMap {}
    /// To the whole batch: `Fn(&Batch<T>) -> Result<Vec<SampleResult<U>>, BoxError>`.
    #[derive(Debug)]
    pub enum PerBatch {}
}

impl<T, U, F> Transformer for FnStep<T, U, F, how::Map>
where
    T: Send + Sync + 'static,
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
    F: Fn(&T) -> U + Send + Sync + 'static,
{
    type Input = T;
    type Output = U;
    fn transform(&self, batch: &Batch<'_, T>) -> Result<Vec<SampleResult<U>>, BoxError> {
        Ok(batch.iter().map(|x| Ok((self.f)(x))).collect())
    }
}

impl<T, U, E, F> Transformer for FnStep<T, U, F, how::TryMap>
where
    T: Send + Sync + 'static,
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
    E: fmt::Display + 'static,
    F: Fn(&T) -> Result<U, E> + Send + Sync + 'static,
{
    type Input = T;
    type Output = U;
    fn transform(&self, batch: &Batch<'_, T>) -> Result<Vec<SampleResult<U>>, BoxError> {
        Ok(batch
            .iter()
            .map(|x| (self.f)(x).map_err(Failure::new))
            .collect())
    }
}

impl<T, U, F> Transformer for FnStep<T, U, F, how::PerBatch>
where
    T: Send + Sync + 'static,
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
    F: for<'b> Fn(&Batch<'b, T>) -> Result<Vec<SampleResult<U>>, BoxError> + Send + Sync + 'static,
{
    type Input = T;
    type Output = U;
    fn transform(&self, batch: &Batch<'_, T>) -> Result<Vec<SampleResult<U>>, BoxError> {
        (self.f)(batch)
    }
}

/// Closure steps. A closure cannot be serialized: a distributed worker
/// builds the same closure by running the same program up to `compute`, as
/// it builds every other step, so the closure must not depend on what only
/// the driver has (a value read after `compute`, the driver's process id).
/// A closure step is named (`name`), since its type says nothing: the name
/// keys its checkpoint folder and its lineage; give it a
/// [`version`](Step::version) when its code changes.
impl<T, U, F> Step<Stateless<FnStep<T, U, F, how::Map>>>
where
    T: Send + Sync + 'static,
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
    F: Fn(&T) -> U + Send + Sync + 'static,
{
    /// A step that applies `f` to each datum (scikit-learn's
    /// `FunctionTransformer`).
    ///
    /// ```
    /// use bob_pipelines_estimator::{InMemory, Pipeline, Step};
    /// use bob_pipelines_sample::Sample;
    ///
    /// let p = Pipeline::new().then(Step::map("square", |x: &f64| x * x));
    /// let out = p.transform(vec![Sample::new("a", 3.0)]).compute(&InMemory)?;
    /// assert_eq!(*out.samples().next().unwrap().data(), 9.0);
    /// # Ok::<(), bob_pipelines_estimator::Error>(())
    /// ```
    pub fn map(name: &str, f: F) -> Self {
        Step::new(FnStep::of(f)).name(name)
    }
}

impl<T, U, E, F> Step<Stateless<FnStep<T, U, F, how::TryMap>>>
where
    T: Send + Sync + 'static,
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
    E: fmt::Display + 'static,
    F: Fn(&T) -> Result<U, E> + Send + Sync + 'static,
{
    /// A step that applies `f` to each datum; an `Err` fails that sample
    /// (with the error's text as the reason), not the run.
    pub fn try_map(name: &str, f: F) -> Self {
        Step::new(FnStep::of(f)).name(name)
    }
}

impl<T, U, F> Step<Stateless<FnStep<T, U, F, how::PerBatch>>>
where
    T: Send + Sync + 'static,
    U: Serialize + DeserializeOwned + Send + Sync + 'static,
    F: for<'b> Fn(&Batch<'b, T>) -> Result<Vec<SampleResult<U>>, BoxError> + Send + Sync + 'static,
{
    /// A step that applies `f` to a whole batch (one result per sample, in
    /// order), e.g. to stack it into one array; an `Err` fails the run.
    pub fn batch(name: &str, f: F) -> Self {
        Step::new(FnStep::of(f)).name(name)
    }
}
