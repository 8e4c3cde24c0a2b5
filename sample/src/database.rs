//! File-list databases: `<root>/<protocol>/<group>.csv` → samples.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::attrs::Value;
use crate::error::list;
use crate::{BoxError, DelayedSample, Error, Key, Meta, Result, Sample, fnv64};

/// The type a CSV column is converted to (bob's `Str_To_Types`); columns without
/// one stay strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnType {
    /// Kept as a string.
    Str,
    /// A signed integer.
    Int,
    /// An unsigned integer.
    UInt,
    /// A 64-bit float.
    Float,
    /// `true`/`false`, `yes`/`no` or `1`/`0`, any case.
    Bool,
}

impl ColumnType {
    fn convert(self, s: &str) -> std::result::Result<Value, String> {
        let bad = |what: &str| format!("`{s}` is not {what}");
        Ok(match self {
            ColumnType::Str => Value::from(s),
            ColumnType::Int => Value::from(s.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
            ColumnType::UInt => Value::from(
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| bad("an unsigned integer"))?,
            ),
            ColumnType::Float => Value::from(s.trim().parse::<f64>().map_err(|_| bad("a number"))?),
            ColumnType::Bool => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Value::from(true),
                "false" | "no" | "0" => Value::from(false),
                _ => return Err(bad("a boolean (true/false, yes/no, 1/0)")),
            },
        })
    }
}

/// A dataset described by CSV file lists: bob's `FileListDatabase` with its
/// `CSVToSamples` reader.
///
/// The folder `root/<protocol>/` holds one `<group>.csv` per group (`train.csv`,
/// `dev.csv`, …). Each row becomes a sample whose attributes are the row's
/// columns; its key comes from the `key` column, else from `path` (or the column
/// set with [`key_column`](Self::key_column)). A file with neither (as bob's own
/// test lists) gets keys made from its rows, `<group>/<hash of the row's
/// cells>`: they stay the same when rows are added or reordered and change
/// when a row is edited, and reading such a file prints a warning saying so.
///
/// ```
/// use bob_pipelines_sample::{ColumnType, FileListDatabase};
/// # let root = std::env::temp_dir().join(format!("flb-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(root.join("default")).unwrap();
/// # std::fs::write(root.join("default/train.csv"), "path,subject,age\nimg/1.png,s1,31\n").unwrap();
/// let db = FileListDatabase::open(&root, "default")?.column_type("age", ColumnType::Int);
/// assert_eq!(db.groups(), ["train"]);
/// let samples = db.samples("train")?;
/// assert_eq!(samples[0].key(), "img/1.png");
/// assert_eq!(samples[0].attr::<i64>("age")?, 31);
/// # std::fs::remove_dir_all(&root).unwrap();
/// # Ok::<(), bob_pipelines_sample::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileListDatabase {
    root: PathBuf,
    protocol: String,
    groups: Vec<String>,
    key_column: Option<String>,
    types: Vec<(String, ColumnType)>,
}

impl FileListDatabase {
    /// The protocols (sub-folders) of a database folder, sorted.
    ///
    /// # Errors
    /// [`Error::Io`] when the folder cannot be read.
    pub fn protocols(root: impl AsRef<Path>) -> Result<Vec<String>> {
        let root = root.as_ref();
        let mut out = Vec::new();
        for entry in read_dir(root)? {
            let entry = entry.map_err(|e| io(root, e))?;
            if entry.file_type().map_err(|e| io(root, e))?.is_dir() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens one protocol of a database.
    ///
    /// # Errors
    /// [`Error::UnknownProtocol`] listing the valid protocols, [`Error::Io`].
    pub fn open(root: impl AsRef<Path>, protocol: &str) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let valid = Self::protocols(&root)?;
        if !valid.iter().any(|p| p == protocol) {
            return Err(Error::UnknownProtocol {
                root,
                protocol: protocol.to_owned(),
                valid,
            });
        }
        let dir = root.join(protocol);
        let mut groups = Vec::new();
        for entry in read_dir(&dir)? {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            if path.extension().is_some_and(|e| e == "csv") && path.is_file() {
                if let Some(stem) = path.file_stem() {
                    groups.push(stem.to_string_lossy().into_owned());
                }
            }
        }
        groups.sort();
        Ok(FileListDatabase {
            root,
            protocol: protocol.to_owned(),
            groups,
            key_column: None,
            types: Vec::new(),
        })
    }

    /// The protocol this database reads.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The groups of the protocol, sorted.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Takes sample keys from this column.
    #[must_use]
    pub fn key_column(mut self, column: &str) -> Self {
        self.key_column = Some(column.to_owned());
        self
    }

    /// Converts a column to a type (bob's `Str_To_Types`).
    #[must_use]
    pub fn column_type(mut self, column: &str, ty: ColumnType) -> Self {
        self.types.retain(|(c, _)| c != column);
        self.types.push((column.to_owned(), ty));
        self
    }

    /// The CSV file of a group.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`] listing the valid groups.
    pub fn list_file(&self, group: &str) -> Result<PathBuf> {
        if !self.groups.iter().any(|g| g == group) {
            return Err(Error::UnknownGroup {
                protocol: self.protocol.clone(),
                group: group.to_owned(),
                valid: self.groups.clone(),
            });
        }
        Ok(self.root.join(&self.protocol).join(format!("{group}.csv")))
    }

    /// The samples of a group, in file order, with no datum (bob's `data=None`):
    /// a later step loads data from an attribute such as `path`.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`], [`Error::Io`], and [`Error::Csv`] with file and
    /// line for a malformed row, a missing key column or a value of the wrong type.
    pub fn samples(&self, group: &str) -> Result<Vec<Sample<()>>> {
        let path = self.list_file(group)?;
        self.read(&path, |meta| Sample::from_meta(meta, ()))
    }

    /// The samples of every group, groups in sorted order.
    ///
    /// # Errors
    /// As [`samples`](Self::samples).
    pub fn all_samples(&self) -> Result<Vec<Sample<()>>> {
        let mut out = Vec::new();
        for g in &self.groups {
            out.extend(self.samples(g)?);
        }
        Ok(out)
    }

    /// The samples of a group as delayed samples whose datum `load` reads from
    /// the row's attributes when a pipeline reaches it.
    ///
    /// # Errors
    /// As [`samples`](Self::samples).
    pub fn delayed_samples<T, E, F>(&self, group: &str, load: F) -> Result<Vec<DelayedSample<T>>>
    where
        T: 'static,
        E: Into<BoxError>,
        F: Fn(&Meta) -> std::result::Result<T, E> + Clone + Send + Sync + 'static,
    {
        let path = self.list_file(group)?;
        self.read(&path, |meta| {
            let load = load.clone();
            let m = meta.clone();
            DelayedSample::from_meta(meta, move || load(&m))
        })
    }

    fn read<S>(&self, path: &Path, mut make: impl FnMut(Arc<Meta>) -> S) -> Result<Vec<S>> {
        let csv_err = |line: u64, reason: String| Error::Csv {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::Headers)
            .from_path(path)
            .map_err(|e| from_csv(path, e))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| from_csv(path, e))?
            .iter()
            .map(str::to_owned)
            .collect();
        let key_col = match &self.key_column {
            Some(c) => Some(header.iter().position(|h| h == c).ok_or_else(|| {
                csv_err(
                    1,
                    format!("no key column `{c}`; columns: {}", list(&header)),
                )
            })?),
            None => ["key", "path"]
                .iter()
                .find_map(|c| header.iter().position(|h| h == c)),
        };
        if key_col.is_none() {
            warn_row_keys(path, &header);
        }
        let group = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let mut row_keys = RowKeys::default();
        let types: Vec<ColumnType> = header
            .iter()
            .map(|h| {
                self.types
                    .iter()
                    .find(|(c, _)| c == h)
                    .map_or(ColumnType::Str, |(_, t)| *t)
            })
            .collect();
        let mut out = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(from_csv(path, e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            let key = match key_col {
                Some(c) => Key::from(&record[c]),
                None => row_keys.next(&group, &record),
            };
            let mut meta = Meta::new(key);
            for ((name, ty), cell) in header.iter().zip(&types).zip(record.iter()) {
                let value = ty
                    .convert(cell)
                    .map_err(|why| csv_err(line, format!("column `{name}`: {why}")))?;
                meta.attrs_mut().insert(name, value);
            }
            out.push(make(Arc::new(meta)));
        }
        Ok(out)
    }
}

/// The keys of rows in a file without a key column: `<group>/<hash of the
/// row's cells>`, so a key stays the same when rows are added, removed or
/// reordered, and changes when its row does (a stale checkpoint is never
/// served for an edited row). The `n`th copy of a repeated row gets `-n`.
#[derive(Default)]
struct RowKeys {
    seen: HashMap<u64, usize>,
}

impl RowKeys {
    fn next(&mut self, group: &str, record: &csv::StringRecord) -> Key {
        let mut cells = Vec::new();
        for cell in record {
            // The unit separator keeps ("a", "bc") and ("ab", "c") apart.
            cells.extend_from_slice(cell.as_bytes());
            cells.push(0x1f);
        }
        let hash = fnv64(&cells);
        let copies = self.seen.entry(hash).or_default();
        *copies += 1;
        match *copies {
            1 => Key::from(format!("{group}/{hash:016x}")),
            n => Key::from(format!("{group}/{hash:016x}-{n}")),
        }
    }
}

/// Says once per file and process that its keys are made from its rows.
fn warn_row_keys(path: &Path, header: &[String]) {
    static WARNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.iter().any(|p| p == path) {
        return;
    }
    warned.push(path.to_path_buf());
    eprintln!(
        "warning: {} has no `key` or `path` column (columns: {}); each sample's key is \
         made from its row (`<group>/<hash of the row>`), stable while the row does not \
         change; name a column with key_column(..) for keys of your own",
        path.display(),
        list(header)
    );
}

fn read_dir(dir: &Path) -> Result<fs::ReadDir> {
    fs::read_dir(dir).map_err(|e| io(dir, e))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn from_csv(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    let reason = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("the row has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Io(_) => {
            return match e.into_kind() {
                csv::ErrorKind::Io(source) => io(path, source),
                _ => unreachable!("matched as an I/O error above"),
            };
        }
        _ => e.to_string(),
    };
    Error::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!("bp-db-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn db() -> TempDir {
        let t = TempDir::new(&format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
        t.write(
            "proto_b/train.csv",
            "path,subject,age,male\na/1,s1,31,yes\na/2,s2,40,no\n",
        );
        t.write("proto_b/dev.csv", "path,subject,age,male\nb/1,s3,22,true\n");
        t.write("proto_a/dev.csv", "key,x\nk,1\n");
        t.write("proto_a/notes.txt", "ignored");
        t
    }

    #[test]
    fn lists_protocols_and_groups_sorted() {
        let t = db();
        assert_eq!(
            FileListDatabase::protocols(&t.0).unwrap(),
            ["proto_a", "proto_b"]
        );
        let d = FileListDatabase::open(&t.0, "proto_b").unwrap();
        assert_eq!(d.groups(), ["dev", "train"]);
        assert_eq!(
            FileListDatabase::open(&t.0, "proto_a").unwrap().groups(),
            ["dev"]
        );
    }

    #[test]
    fn rows_become_samples_with_typed_columns() {
        let t = db();
        let d = FileListDatabase::open(&t.0, "proto_b")
            .unwrap()
            .column_type("age", ColumnType::Int)
            .column_type("male", ColumnType::Bool);
        let s = d.samples("train").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].key(), "a/2");
        assert_eq!(s[1].attr::<String>("subject").unwrap(), "s2");
        assert_eq!(s[1].attr::<i64>("age").unwrap(), 40);
        assert!(!s[1].attr::<bool>("male").unwrap());
        assert_eq!(d.all_samples().unwrap().len(), 3);
        let k = FileListDatabase::open(&t.0, "proto_a")
            .unwrap()
            .samples("dev")
            .unwrap();
        assert_eq!(k[0].key(), "k");
    }

    #[test]
    fn delayed_samples_load_from_their_row() {
        let t = db();
        let d = FileListDatabase::open(&t.0, "proto_b").unwrap();
        let s = d
            .delayed_samples("dev", |m: &Meta| {
                m.attr::<String>("subject").map(|s| s.len())
            })
            .unwrap();
        assert_eq!(s[0].load_data().unwrap(), 2);
    }

    #[test]
    fn unknown_protocol_and_group_list_the_valid_ones() {
        let t = db();
        let e = FileListDatabase::open(&t.0, "nope")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`nope`") && e.contains("proto_a, proto_b"),
            "{e}"
        );
        let d = FileListDatabase::open(&t.0, "proto_b").unwrap();
        let e = d.samples("eval").unwrap_err().to_string();
        assert!(e.contains("`eval`") && e.contains("dev, train"), "{e}");
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let t = db();
        t.write("bad/g.csv", "path,a\nx,1\ny,2,3\n");
        t.write("types/g.csv", "path,age\nx,1\ny,old\n");
        let e = FileListDatabase::open(&t.0, "bad")
            .unwrap()
            .samples("g")
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Csv { line: 3, .. }), "{msg}");
        assert!(msg.contains("g.csv:3") && msg.contains("3 fields"), "{msg}");
        let e = FileListDatabase::open(&t.0, "types")
            .unwrap()
            .column_type("age", ColumnType::Int)
            .samples("g")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g.csv:3") && e.contains("`age`") && e.contains("`old`"),
            "{e}"
        );
    }

    #[test]
    fn rows_without_a_key_column_get_keys_made_from_the_row() {
        let t = db();
        t.write("nokey/dev.csv", "file,a\nx,1\ny,2\nx,1\n");
        let keys = |db: &FileListDatabase| -> Vec<String> {
            db.samples("dev")
                .unwrap()
                .iter()
                .map(|s| s.key().to_string())
                .collect()
        };
        let d = FileListDatabase::open(&t.0, "nokey").unwrap();
        let first = keys(&d);
        assert!(
            first[0].starts_with("dev/") && first[0].len() == 4 + 16,
            "{first:?}"
        );
        assert_ne!(first[0], first[1]);
        assert_eq!(first[2], format!("{}-2", first[0]), "a repeated row");

        // Rows added and reordered keep their keys; an edited row gets a new one.
        t.write("nokey/dev.csv", "file,a\nnew,0\ny,2\nx,1\nx,1\n");
        let moved = keys(&d);
        assert_eq!(
            moved[1..],
            [first[1].clone(), first[0].clone(), first[2].clone()]
        );
        t.write("nokey/dev.csv", "file,a\nx,1\ny,3\n");
        assert!(!first.contains(&keys(&d)[1]));

        // A key column named but absent is still an error naming the columns.
        let e = d.key_column("id").samples("dev").unwrap_err().to_string();
        assert!(e.contains("`id`") && e.contains("file, a"), "{e}");
    }
}
