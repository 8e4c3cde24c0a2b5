//! Stacking the data of many samples into one `ndarray` array.

use ndarray::{Array, ArrayBase, Data, Dimension, Ix0, Ix1};

use crate::{Error, Key, Result, Sample};

/// A datum that can be stacked with others of its kind into one array of one
/// more dimension: `N` items of shape `S` give an array of shape `(N, S...)`.
///
/// Implemented for `ndarray` arrays and views, `Vec<A>`, `[A; N]` and numeric
/// scalars. The element type is part of the type, so a batch can never mix
/// dtypes; shapes are checked at run time.
pub trait Stack {
    /// The element type of the stacked array.
    type Elem: Clone;
    /// The dimension of one item (its stack has one dimension more).
    type ItemDim: Dimension;
    /// The shape of this item.
    fn item_dim(&self) -> Self::ItemDim;
    /// Appends this item's elements, in logical (row-major) order.
    fn extend_into(&self, out: &mut Vec<Self::Elem>);
}

/// The array type that stacking items of type `T` gives.
pub type Stacked<T> = Array<<T as Stack>::Elem, <<T as Stack>::ItemDim as Dimension>::Larger>;

impl<A, S, D> Stack for ArrayBase<S, D>
where
    A: Clone,
    S: Data<Elem = A>,
    D: Dimension,
{
    type Elem = A;
    type ItemDim = D;
    fn item_dim(&self) -> D {
        self.raw_dim()
    }
    fn extend_into(&self, out: &mut Vec<A>) {
        match self.as_slice() {
            Some(s) => out.extend_from_slice(s),
            None => out.extend(self.iter().cloned()),
        }
    }
}

impl<A: Clone> Stack for Vec<A> {
    type Elem = A;
    type ItemDim = Ix1;
    fn item_dim(&self) -> Ix1 {
        ndarray::Dim(self.len())
    }
    fn extend_into(&self, out: &mut Vec<A>) {
        out.extend_from_slice(self);
    }
}

impl<A: Clone, const N: usize> Stack for [A; N] {
    type Elem = A;
    type ItemDim = Ix1;
    fn item_dim(&self) -> Ix1 {
        ndarray::Dim(N)
    }
    fn extend_into(&self, out: &mut Vec<A>) {
        out.extend_from_slice(self);
    }
}

macro_rules! stack_scalar {
    ($($t:ty),*) => {$(
        impl Stack for $t {
            type Elem = $t;
            type ItemDim = Ix0;
            fn item_dim(&self) -> Ix0 {
                ndarray::Dim(())
            }
            fn extend_into(&self, out: &mut Vec<$t>) {
                out.push(*self);
            }
        }
    )*};
}
stack_scalar!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, bool);

/// Stacks items into one array in one allocation.
///
/// # Errors
/// [`Error::EmptyBatch`] for no items, [`Error::Shape`] naming the first item whose
/// shape differs from the first item's.
pub fn stack<'a, T, I>(items: I) -> Result<Stacked<T>>
where
    T: Stack + 'a,
    I: IntoIterator<Item = (&'a Key, &'a T)>,
    I::IntoIter: ExactSizeIterator,
{
    let mut items = items.into_iter();
    let n = items.len();
    let (_, first) = items.next().ok_or(Error::EmptyBatch)?;
    let dim = first.item_dim();
    let mut buf = Vec::with_capacity(n.saturating_mul(dim.size()));
    first.extend_into(&mut buf);
    for (index, (key, item)) in items.enumerate() {
        let d = item.item_dim();
        if d != dim {
            return Err(Error::Shape {
                index: index + 1,
                key: key.clone(),
                expected: dim.slice_vec(),
                found: d.slice_vec(),
            });
        }
        item.extend_into(&mut buf);
    }
    let mut shape = <T::ItemDim as Dimension>::Larger::zeros(dim.ndim() + 1);
    shape[0] = n;
    for axis in 0..dim.ndim() {
        shape[axis + 1] = dim[axis];
    }
    Ok(Array::from_shape_vec(shape, buf)
        .unwrap_or_else(|_| unreachable!("every item was checked to have the first item's shape")))
}

trait SliceVec {
    fn slice_vec(&self) -> Vec<usize>;
}

impl<D: Dimension> SliceVec for D {
    fn slice_vec(&self) -> Vec<usize> {
        self.as_array_view().to_vec()
    }
}

/// A list of samples seen as one array: bob's `SampleBatch`.
///
/// ```
/// use bob_pipelines_sample::{Sample, SampleBatch};
/// use ndarray::array;
///
/// let samples: Vec<_> = (0..3).map(|i| Sample::new(i.to_string(), array![i as f64, 1.0])).collect();
/// let x = SampleBatch::new(&samples).to_array()?;
/// assert_eq!(x.shape(), &[3, 2]);
/// assert_eq!(x[[2, 0]], 2.0);
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SampleBatch<'a, T> {
    samples: &'a [Sample<T>],
}

impl<'a, T> SampleBatch<'a, T> {
    /// A batch over these samples.
    pub fn new(samples: &'a [Sample<T>]) -> Self {
        SampleBatch { samples }
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The datum of sample `i`.
    pub fn get(&self, i: usize) -> Option<&'a T> {
        self.samples.get(i).map(Sample::data)
    }

    /// The data, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a T> + 'a {
        self.samples.iter().map(Sample::data)
    }

    /// The data stacked into one array of shape `(N, item shape...)`.
    ///
    /// # Errors
    /// As [`stack`].
    pub fn to_array(&self) -> Result<Stacked<T>>
    where
        T: Stack,
    {
        stack(self.samples.iter().map(|s| (s.key(), s.data())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn stacks_matrices_views_vectors_and_scalars() {
        let s: Vec<_> = (0..4)
            .map(|i| Sample::new(format!("k{i}"), Array2::from_elem((2, 3), i as f32)))
            .collect();
        let x = SampleBatch::new(&s).to_array().unwrap();
        assert_eq!(x.shape(), &[4, 2, 3]);
        assert_eq!(x[[3, 1, 2]], 3.0);

        // A transposed (non-contiguous) view stacks in logical order.
        let m = array![[1, 2], [3, 4]];
        let t = m.t();
        let keys = [Key::from("a")];
        let y = stack(keys.iter().zip([&t])).unwrap();
        assert_eq!(y, array![[[1, 3], [2, 4]]]);

        let v = [Sample::new("a", vec![1u8, 2]), Sample::new("b", vec![3, 4])];
        assert_eq!(
            SampleBatch::new(&v).to_array().unwrap(),
            array![[1u8, 2], [3, 4]]
        );
        let sc = [Sample::new("a", 1.5f64), Sample::new("b", 2.5)];
        assert_eq!(SampleBatch::new(&sc).to_array().unwrap(), array![1.5, 2.5]);
    }

    #[test]
    fn shape_mismatch_names_the_first_odd_sample() {
        let s = vec![
            Sample::new("ok1", vec![1.0, 2.0]),
            Sample::new("ok2", vec![1.0, 2.0]),
            Sample::new("odd", vec![1.0]),
            Sample::new("odd2", vec![]),
        ];
        match SampleBatch::new(&s).to_array() {
            Err(Error::Shape {
                index,
                key,
                expected,
                found,
            }) => {
                assert_eq!((index, key.as_str()), (2, "odd"));
                assert_eq!((expected, found), (vec![2], vec![1]));
            }
            other => panic!("expected a shape error, got {other:?}"),
        }
        let none: Vec<Sample<Vec<f64>>> = vec![];
        assert!(matches!(
            SampleBatch::new(&none).to_array(),
            Err(Error::EmptyBatch)
        ));
    }
}
