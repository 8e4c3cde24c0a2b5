//! Crash-safe writes, reads, stale temp files and corrupt files.

use std::fs::{self, File};
use std::io::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::{Error, Result};

/// What a write waits for before it counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Durability {
    /// Write a temp file and rename it: a killed process never leaves a partial
    /// file. Data still in the page cache is lost if the machine itself dies.
    #[default]
    Rename,
    /// Also `fsync` the file before renaming it: survives a power cut.
    Fsync,
    /// Also `fsync` the folder after renaming: the rename itself survives too.
    FsyncDir,
}

/// Writes files atomically (temp file in the target folder, then rename),
/// retrying with exponential backoff what can pass on a second try: NFS and
/// cluster file systems fail transiently, and a retry is cheaper than a lost
/// day. What cannot pass (a read-only file system, a full disk, no
/// permission, a file where a folder should be) fails at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    attempts: u32,
    durability: Durability,
    backoff: Duration,
}

impl Default for Writer {
    /// 10 attempts (bob's default), first backoff 10 ms, [`Durability::Rename`].
    fn default() -> Self {
        Writer {
            attempts: 10,
            durability: Durability::Rename,
            backoff: Duration::from_millis(10),
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace(['/', '.', '-'], "_"))
            .unwrap_or_else(|_| "host".to_owned())
    })
}

const TEMP_MARK: &str = ".tmp-";

/// Whether a file name is one of our temp files: `.<name>.tmp-<host>-<pid>-<n>`.
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// The name of a file that this process owns while it lives:
/// `.<name>.tmp-<host>-<pid>-<unique>`. Once the process is gone,
/// [`is_stale_temp`] recognises it and [`clean_temps`] removes it. `unique`
/// must not contain `-`.
pub fn owned_name(name: &str, unique: &str) -> String {
    format!(
        ".{name}{TEMP_MARK}{}-{}-{unique}",
        hostname(),
        std::process::id()
    )
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(owned_name(&name, &n.to_string()))
}

/// Whether a failed file operation may pass when tried again: an interrupted
/// call, a timeout, a busy or locked resource, NFS's stale handle, or an I/O
/// error (what an NFS soft mount reports for a server that did not answer).
/// A read-only file system, a full disk, a missing permission or a file
/// where a folder should be stay what they are.
fn may_pass_again(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    // Linux's errno values for what `ErrorKind` does not name on stable.
    const EIO: i32 = 5;
    const EBUSY: i32 = 16;
    const ENOLCK: i32 = 37;
    const ESTALE: i32 = 116;
    matches!(e.kind(), K::Interrupted | K::WouldBlock | K::TimedOut)
        || matches!(e.raw_os_error(), Some(EIO | EBUSY | ENOLCK | ESTALE))
}

/// The file that stands where a folder of `path` should be, if any: the
/// nearest existing ancestor of `path`, when it is not a folder.
fn file_in_the_way(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_ok())
        .filter(|a| !a.is_dir())
        .map(Path::to_path_buf)
}

impl Writer {
    /// The default writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times a write is tried (at least 1).
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// What a write waits for.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The first wait between attempts (doubled each time, at most 1 s).
    #[must_use]
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Writes `bytes` to `path` atomically, creating its folder.
    ///
    /// # Errors
    /// [`Error::InTheWay`] at once when a file stands where a folder of
    /// `path` should be; [`Error::Io`] at once for an error that cannot pass
    /// on a second try, or with the last error once every attempt failed. No
    /// temp file is left behind.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            match self.try_write(path, bytes) {
                Ok(()) => return Ok(()),
                Err(source) if attempt >= self.attempts || !may_pass_again(&source) => {
                    if let Some(file) = file_in_the_way(path) {
                        return Err(Error::InTheWay {
                            path: path.to_path_buf(),
                            file,
                        });
                    }
                    return Err(Error::Io {
                        action: "writing",
                        path: path.to_path_buf(),
                        source,
                    });
                }
                Err(_) => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(1));
                    attempt += 1;
                }
            }
        }
    }

    fn try_write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let tmp = temp_path(path);
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            if self.durability >= Durability::Fsync {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(&tmp, path)?;
            if self.durability >= Durability::FsyncDir {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// The bytes of a file: read into memory when small, memory-mapped when large.
#[derive(Debug)]
pub enum Bytes {
    /// Read into memory.
    Read(Vec<u8>),
    /// Memory-mapped.
    Mapped(memmap2::Mmap),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Read(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

/// Files at least this large are memory-mapped instead of read: below it, the
/// mapping's system calls and page faults cost more than a copy.
pub const MAP_THRESHOLD: u64 = 1 << 16;

/// Memory-maps a file.
#[expect(
    unsafe_code,
    reason = "memory-mapping a file is unsafe in memmap2's API"
)]
pub(crate) fn map(file: &File, path: &Path) -> Result<memmap2::Mmap> {
    // SAFETY: checkpoint files are only ever replaced by rename, never written
    // in place, so the mapped file does not change while it is mapped. A file
    // truncated by another program would fault on access; every reader checks
    // the length against the header before touching the data.
    unsafe { memmap2::Mmap::map(file) }.map_err(|source| Error::Io {
        action: "memory-mapping",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file, memory-mapping it when it is large.
///
/// # Errors
/// [`Error::Io`].
pub fn read(path: &Path) -> Result<Bytes> {
    let io = |source| Error::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len >= MAP_THRESHOLD {
        return Ok(Bytes::Mapped(map(&file, path)?));
    }
    let mut buf = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut &file, &mut buf).map_err(io)?;
    Ok(Bytes::Read(buf))
}

/// Moves a corrupt file aside (`<file>.corrupt`) so it is never read again and
/// stays there to be looked at.
///
/// # Errors
/// [`Error::Io`] when it can be neither moved nor deleted.
pub fn quarantine(path: &Path) -> Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    match fs::rename(path, &aside) {
        Ok(()) => Ok(aside),
        Err(_) => fs::remove_file(path)
            .map(|()| path.to_path_buf())
            .map_err(|source| Error::Io {
                action: "removing corrupt",
                path: path.to_path_buf(),
                source,
            }),
    }
}

/// Calls `f` on every file under `dir` (recursively); a missing `dir` has none.
///
/// # Errors
/// [`Error::Io`] for a folder that cannot be read.
pub fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                action: "listing",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            action: "listing",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, f)?,
            Ok(_) => f(&path),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Whether the writer of a temp file may still be writing it: it runs on this
/// host and its process is alive, or the file is younger than a day.
fn may_be_live(path: &Path, name: &str) -> bool {
    let owner = name.rsplit_once(TEMP_MARK).map(|(_, rest)| rest);
    let mut parts = owner.into_iter().flat_map(|o| o.rsplitn(3, '-'));
    let (_n, pid, host) = (parts.next(), parts.next(), parts.next());
    if host == Some(hostname()) {
        let pid = pid.unwrap_or("");
        if pid == std::process::id().to_string() {
            return true;
        }
        return fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
    }
    let age = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    age.is_none_or(|a| a < Duration::from_secs(24 * 3600))
}

/// Whether `path` is a temp file whose writer is gone: a dead process on
/// this host, or older than a day from another host.
pub fn is_stale_temp(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    is_temp(&name) && !may_be_live(path, &name)
}

/// Removes the temp files that crashed writers left in `dir` (and its
/// sub-folders when `recursive`): those of dead processes on this host, and
/// those older than a day from other hosts. Returns how many it removed.
///
/// # Errors
/// [`Error::Io`] for a folder that cannot be read.
pub fn clean_temps(dir: &Path, recursive: bool) -> Result<usize> {
    let mut removed = 0;
    let mut clean = |p: &Path| {
        if is_stale_temp(p) && fs::remove_file(p).is_ok() {
            removed += 1;
        }
    };
    if recursive {
        walk(dir, &mut clean)?;
    } else if let Ok(entries) = fs::read_dir(dir) {
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .for_each(|p| clean(&p));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bp-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_are_atomic_and_leave_no_temp() {
        let d = tmpdir("atomic");
        let p = d.join("a/b/c.bin");
        Writer::new()
            .durability(Durability::FsyncDir)
            .write(&p, b"hello")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        Writer::new().write(&p, b"again").unwrap();
        assert_eq!(&*read(&p).unwrap(), b"again");
        let mut files = vec![];
        walk(&d, &mut |p| files.push(p.to_path_buf())).unwrap();
        assert_eq!(files, [p]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_where_a_folder_should_be_fails_at_once_and_is_named() {
        let d = tmpdir("fail");
        fs::write(d.join("file"), b"x").unwrap();
        // Once as the folder itself ("File exists"), once as a folder above
        // it ("Not a directory"). A retry would wait a minute: none is made.
        for target in ["file/x.npy", "file/deeper/x.npy"] {
            let t0 = std::time::Instant::now();
            let e = Writer::new()
                .attempts(3)
                .backoff(Duration::from_secs(60))
                .write(&d.join(target), b"y")
                .unwrap_err();
            assert!(t0.elapsed() < Duration::from_secs(30), "it was retried");
            match &e {
                Error::InTheWay { file, .. } => assert_eq!(file, &d.join("file")),
                e => panic!("{e}"),
            }
            let msg = e.to_string();
            assert!(msg.contains("is a file where a folder should be"), "{msg}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_errors_that_can_pass_again_are_retried() {
        use std::io::{Error as E, ErrorKind as K};
        for transient in [
            E::from(K::Interrupted),
            E::from(K::TimedOut),
            E::from_raw_os_error(116), // ESTALE: NFS's stale file handle
            E::from_raw_os_error(5),   // EIO: an NFS soft mount's timeout
        ] {
            assert!(may_pass_again(&transient), "{transient}");
        }
        for lasting in [
            E::from_raw_os_error(30), // EROFS
            E::from_raw_os_error(28), // ENOSPC
            E::from_raw_os_error(13), // EACCES
            E::from_raw_os_error(17), // EEXIST
            E::from_raw_os_error(20), // ENOTDIR
        ] {
            assert!(!may_pass_again(&lasting), "{lasting}");
        }
    }

    #[test]
    fn owned_names_are_stale_once_their_process_is_gone() {
        let mine = owned_name("bob-pipelines-secret", "ab12");
        assert!(is_temp(&mine));
        assert!(!is_stale_temp(&std::env::temp_dir().join(&mine)));
        let dead = format!(
            ".bob-pipelines-secret{TEMP_MARK}{}-999999999-ab12",
            hostname()
        );
        assert!(is_stale_temp(&std::env::temp_dir().join(dead)));
    }

    #[test]
    fn stale_temps_of_dead_writers_are_cleaned_live_ones_kept() {
        let d = tmpdir("clean");
        let dead = d.join(format!(".x.npy{TEMP_MARK}{}-999999999-0", hostname()));
        let mine = d.join(format!(
            ".y.npy{TEMP_MARK}{}-{}-0",
            hostname(),
            std::process::id()
        ));
        let foreign_fresh = d.join(format!(".z.npy{TEMP_MARK}otherhost-1-0"));
        for p in [&dead, &mine, &foreign_fresh] {
            fs::write(p, b"partial").unwrap();
        }
        fs::write(d.join("keep.npy"), b"data").unwrap();
        assert_eq!(clean_temps(&d, true).unwrap(), 1);
        assert!(!dead.exists() && mine.exists() && foreign_fresh.exists());
        assert!(d.join("keep.npy").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn large_files_are_mapped_and_corrupt_ones_moved_aside() {
        let d = tmpdir("map");
        let p = d.join("big.bin");
        let data = vec![7u8; MAP_THRESHOLD as usize + 10];
        Writer::new().write(&p, &data).unwrap();
        let b = read(&p).unwrap();
        assert!(matches!(b, Bytes::Mapped(_)));
        assert_eq!(&*b, &data[..]);
        drop(b);
        let aside = quarantine(&p).unwrap();
        assert!(!p.exists() && aside.ends_with("big.bin.corrupt"));
        fs::remove_dir_all(&d).unwrap();
    }
}
