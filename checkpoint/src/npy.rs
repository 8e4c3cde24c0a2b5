//! NumPy's `.npy` format (version 1.0): what `numpy.save` writes and
//! `numpy.load` reads.

use std::fs::File;
use std::path::Path;

use ndarray::{Array, ArrayView, Dimension, IxDyn, ShapeBuilder};

use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// An element type `.npy` files can hold, with NumPy's name for it.
pub trait NpyElem: bytemuck::Pod + 'static {
    /// NumPy's dtype string (`<f4` …): little-endian.
    const DESCR: &'static str;
}

macro_rules! elem {
    ($($t:ty => $d:literal),*) => {$( impl NpyElem for $t { const DESCR: &'static str = $d; } )*};
}
elem!(f32 => "<f4", f64 => "<f8", i8 => "|i1", i16 => "<i2", i32 => "<i4", i64 => "<i8",
      u8 => "|u1", u16 => "<u2", u32 => "<u4", u64 => "<u8");

#[cfg(target_endian = "big")]
compile_error!("the .npy codec writes little-endian data and supports little-endian hosts only");

/// Appends `array` in `.npy` format to `out`.
pub fn write_npy<A: NpyElem, D: Dimension>(
    array: &ndarray::ArrayBase<impl ndarray::Data<Elem = A>, D>,
    out: &mut Vec<u8>,
) {
    out.reserve(128 + array.len() * size_of::<A>());
    write_npy_header::<A>(array.shape(), out);
    match array.as_slice() {
        Some(s) => out.extend_from_slice(bytemuck::cast_slice(s)),
        None => array
            .iter()
            .for_each(|x| out.extend_from_slice(bytemuck::bytes_of(x))),
    }
}

/// Appends the header of a C-order `.npy` array of `A` and `shape`; its data
/// follow, aligned to 64 bytes.
pub(crate) fn write_npy_header<A: NpyElem>(shape: &[usize], out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Written in place, without building strings: this is per sample on the
    // wire between processes, not only per file.
    let at = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0, 0, 0]);
    let _ = write!(
        out,
        "{{'descr': '{}', 'fortran_order': False, 'shape': (",
        A::DESCR
    );
    match shape {
        [] => {}
        [n] => {
            let _ = write!(out, "{n},");
        }
        dims => {
            for (i, d) in dims.iter().enumerate() {
                let _ = write!(out, "{}{d}", if i == 0 { "" } else { ", " });
            }
        }
    }
    out.extend_from_slice(b"), }");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes
    // so the data is aligned for every element type, as NumPy does.
    let unpadded = out.len() - at + 1;
    let padded = unpadded.next_multiple_of(64);
    out.resize(out.len() + padded - unpadded, b' ');
    out.push(b'\n');
    let header_len = (padded - MAGIC.len() - 4) as u16;
    out[at + 8..at + 10].copy_from_slice(&header_len.to_le_bytes());
}

/// What a `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The dtype string.
    pub descr: String,
    /// Column-major data.
    pub fortran_order: bool,
    /// The shape.
    pub shape: Vec<usize>,
    /// Where the data starts.
    pub data_offset: usize,
}

/// Parses and checks a `.npy` header.
///
/// # Errors
/// A reason when the bytes are not a `.npy` file this reader understands.
pub fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let v = view(bytes)?;
    Ok(Header {
        descr: v.descr.to_owned(),
        fortran_order: v.fortran_order,
        shape: v.shape().to_vec(),
        data_offset: v.data_offset,
    })
}

/// NumPy's limit on dimensions (`NPY_MAXDIMS` is 32; 64 since NumPy 2).
const MAX_DIMS: usize = 64;

/// A parsed header that borrows from the bytes and allocates nothing.
struct View<'a> {
    descr: &'a str,
    fortran_order: bool,
    dims: [usize; MAX_DIMS],
    ndim: usize,
    data_offset: usize,
}

impl View<'_> {
    fn shape(&self) -> &[usize] {
        &self.dims[..self.ndim]
    }
}

fn view(bytes: &[u8]) -> std::result::Result<View<'_>, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".to_owned());
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let text = bytes.get(start..start + len).ok_or("truncated header")?;
    let text = std::str::from_utf8(text).map_err(|_| "header is not text")?;
    let field = |quoted: &str| {
        let at = text
            .find(quoted)
            .ok_or_else(|| format!("header has no {quoted}"))?;
        let rest = text[at + quoted.len()..].trim_start();
        Ok::<_, String>(
            rest.strip_prefix(':')
                .ok_or("malformed header")?
                .trim_start(),
        )
    };
    let descr = field("'descr'")?
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("malformed descr")?;
    let fortran_order = field("'fortran_order'")?.starts_with("True");
    let inner = field("'shape'")?
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed shape")?;
    let mut dims = [0usize; MAX_DIMS];
    let mut ndim = 0;
    for d in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let slot = dims
            .get_mut(ndim)
            .ok_or(format!("more than {MAX_DIMS} dimensions"))?;
        *slot = d.parse().map_err(|_| format!("bad dimension `{d}`"))?;
        ndim += 1;
    }
    Ok(View {
        descr,
        fortran_order,
        dims,
        ndim,
        data_offset: start + len,
    })
}

/// Checks that `bytes` hold an array of `A` with `D`'s number of dimensions,
/// and exactly as many data bytes as the shape says.
fn check<A: NpyElem, D: Dimension>(bytes: &[u8]) -> std::result::Result<View<'_>, String> {
    let h = view(bytes)?;
    if h.descr != A::DESCR {
        return Err(format!(
            "dtype is {} where {} was expected",
            h.descr,
            A::DESCR
        ));
    }
    if let Some(n) = D::NDIM {
        if n != h.ndim {
            return Err(format!("{} dimensions where {n} were expected", h.ndim));
        }
    }
    let count = h
        .shape()
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let expected = count.checked_mul(size_of::<A>()).ok_or("shape overflows")?;
    let got = bytes.len() - h.data_offset.min(bytes.len());
    if got != expected {
        return Err(format!(
            "{got} data bytes where the shape {:?} needs {expected} (truncated or padded)",
            h.shape()
        ));
    }
    Ok(h)
}

/// Reads an array from `.npy` bytes (one copy of the data).
///
/// # Errors
/// A reason when the bytes are not an array of this element type and number
/// of dimensions, or are truncated.
pub fn read_npy<A: NpyElem, D: Dimension>(
    bytes: &[u8],
) -> std::result::Result<Array<A, D>, String> {
    let h = check::<A, D>(bytes)?;
    let data = &bytes[h.data_offset..];
    let values: Vec<A> = match bytemuck::try_cast_slice::<u8, A>(data) {
        Ok(s) => s.to_vec(),
        Err(_) => {
            // Unaligned in memory: copy byte-wise into an aligned buffer.
            let mut v = vec![<A as bytemuck::Zeroable>::zeroed(); data.len() / size_of::<A>()];
            bytemuck::cast_slice_mut::<A, u8>(&mut v).copy_from_slice(data);
            v
        }
    };
    let mut dim = D::zeros(h.ndim);
    dim.slice_mut().copy_from_slice(h.shape());
    let array = if h.fortran_order {
        Array::from_shape_vec(dim.f(), values)
    } else {
        Array::from_shape_vec(dim, values)
    };
    array.map_err(|e| e.to_string())
}

/// A `.npy` array read in place from a memory-mapped file: no copy, whatever
/// its size; the operating system pages it in as it is read.
#[derive(Debug)]
pub struct MappedArray<A, D> {
    map: memmap2::Mmap,
    header: Header,
    _types: std::marker::PhantomData<(A, D)>,
}

impl<A: NpyElem, D: Dimension> MappedArray<A, D> {
    /// Maps a `.npy` file and checks its header and size.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Corrupt`] when the file is not an array of
    /// this type or is truncated.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            action: "opening",
            path: path.to_path_buf(),
            source,
        })?;
        let map = crate::files::map(&file, path)?;
        let corrupt = |reason| Error::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let header = check::<A, D>(&map).map_err(corrupt)?;
        let header = Header {
            descr: header.descr.to_owned(),
            fortran_order: header.fortran_order,
            shape: header.shape().to_vec(),
            data_offset: header.data_offset,
        };
        if header.fortran_order {
            return Err(corrupt(
                "Fortran-ordered arrays cannot be mapped in place".to_owned(),
            ));
        }
        // The data offset is a multiple of 16 in every file NumPy or we write,
        // and mappings are page-aligned; anything else is refused, not misread.
        bytemuck::try_cast_slice::<u8, A>(&map[header.data_offset..])
            .map_err(|e| corrupt(format!("data is not aligned for its type: {e}")))?;
        Ok(MappedArray {
            map,
            header,
            _types: std::marker::PhantomData,
        })
    }

    /// The array, viewed in place.
    pub fn view(&self) -> ArrayView<'_, A, D> {
        let data: &[A] = bytemuck::cast_slice(&self.map[self.header.data_offset..]);
        ArrayView::from_shape(IxDyn(&self.header.shape), data)
            .and_then(|v| v.into_dimensionality::<D>())
            .unwrap_or_else(|_| unreachable!("size and dimensions checked in open"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3, ArrayD, array};

    #[test]
    fn round_trips_and_headers_are_aligned() {
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let mut buf = Vec::new();
        write_npy(&a, &mut buf);
        let h = parse_header(&buf).unwrap();
        assert_eq!(
            (h.descr.as_str(), h.shape.as_slice(), h.data_offset % 64),
            ("<f4", &[2, 3][..], 0)
        );
        assert_eq!(read_npy::<f32, ndarray::Ix2>(&buf).unwrap(), a);
        // A transposed view is written in logical order.
        let mut t = Vec::new();
        write_npy(&a.t(), &mut t);
        assert_eq!(read_npy::<f32, ndarray::Ix2>(&t).unwrap(), a.t());
        let d: ArrayD<i64> = ArrayD::from_shape_vec(vec![2, 1, 2], vec![1, 2, 3, 4]).unwrap();
        let mut b = Vec::new();
        write_npy(&d, &mut b);
        assert_eq!(read_npy::<i64, IxDyn>(&b).unwrap(), d);
        let s = ndarray::arr0(5u8);
        let mut c = Vec::new();
        write_npy(&s, &mut c);
        assert_eq!(read_npy::<u8, ndarray::Ix0>(&c).unwrap(), s);
    }

    #[test]
    fn large_arrays_are_viewed_in_place_and_bad_files_refused() {
        let dir = std::env::temp_dir().join(format!("bp-npy-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Array2::from_shape_fn((300, 128), |(i, j)| (i * 128 + j) as f32);
        let mut buf = Vec::new();
        write_npy(&a, &mut buf);
        let path = dir.join("big.npy");
        std::fs::write(&path, &buf).unwrap();
        let m = MappedArray::<f32, ndarray::Ix2>::open(&path).unwrap();
        assert_eq!(m.view(), a.view());
        // The view points into the mapping, not into a copy.
        let data = m.view().as_ptr() as usize;
        let map = m.map.as_ptr() as usize;
        assert!((map..map + m.map.len()).contains(&data));
        std::fs::write(&path, &buf[..buf.len() - 4]).unwrap();
        let e = MappedArray::<f32, ndarray::Ix2>::open(&path).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(MappedArray::<f64, ndarray::Ix2>::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_refused_with_a_reason() {
        let a = Array2::<f64>::zeros((4, 4));
        let mut buf = Vec::new();
        write_npy(&a, &mut buf);
        let truncated = &buf[..buf.len() - 3];
        assert!(
            read_npy::<f64, ndarray::Ix2>(truncated)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            read_npy::<f32, ndarray::Ix2>(&buf)
                .unwrap_err()
                .contains("dtype is <f8")
        );
        assert!(
            read_npy::<f64, ndarray::Ix3>(&buf)
                .unwrap_err()
                .contains("2 dimensions")
        );
        assert!(
            read_npy::<f64, ndarray::Ix2>(b"garbage garbage")
                .unwrap_err()
                .contains("magic")
        );
        assert!(read_npy::<f64, ndarray::Ix2>(&buf[..20]).is_err());
        let _ = Array3::<f32>::zeros((1, 1, 1));
    }
}
