//! The wire between a scheduler and its workers: length-prefixed MessagePack
//! frames, and the handshake that authenticates both ends before anything else
//! is exchanged.
//!
//! A frame is a 4-byte little-endian length and that many bytes of MessagePack
//! (rmp-serde, named fields). A length above the receiver's maximum is refused
//! before anything is allocated, so a hostile or confused peer cannot make a
//! process reserve gigabytes.
//!
//! The handshake (protocol version 4), scheduler `S`, worker `W`, shared secret `k`:
//! 1. `S → W` `Challenge { protocol, nonce_s }` (32 random bytes).
//! 2. `W → S` `Hello { protocol, proof = HMAC-SHA256(k, "worker" ‖ nonce_s), nonce_w, fingerprint, … }`.
//! 3. `S` checks the proof (in constant time). A wrong proof closes the
//!    connection with no reply: a peer without the secret learns nothing.
//!    Otherwise `S → W` `Welcome { proof = HMAC-SHA256(k, "scheduler" ‖ nonce_w), worker }`,
//!    or, for a protocol or graph fingerprint that differs, `Rejected { reason }`.
//! 4. `W` checks the scheduler's proof: a worker never takes tasks from an
//!    impostor either.
//!
//! The secret travels in a file only its owner can read ([`SecretFile`]); the
//! environment and command line carry the file's path, never the secret.
//!
//! A connection is TCP, or an abstract Unix socket (`unix:@<name>`) when
//! the scheduler and its workers share one machine ([`Stream`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The protocol version this build speaks (3 since run messages go by
/// position: `distributed::protocol`; 4 since a partition's keys and
/// lengths cross as byte columns; 5 since a read of checkpoints counts the
/// samples it recomputed that could not be loaded; 6 since an answer says
/// when its run ended by the worker's clock).
pub const PROTOCOL: u32 = 6;

/// The largest frame accepted unless a peer is told otherwise: 256 MiB.
pub const DEFAULT_MAX_FRAME: usize = 256 << 20;

/// What can go wrong on the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// A frame longer than the receiver accepts.
    #[error("frame of {len} bytes refused: the limit is {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame that is not the message expected.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer does not know the secret (or sent garbage where its proof goes).
    #[error("authentication failed: the peer does not know this run's secret")]
    Unauthenticated,
    /// The peer speaks another protocol version.
    #[error(
        "protocol version {theirs} where {ours} is spoken: run the same build of the program on both ends"
    )]
    Protocol {
        /// The peer's version.
        theirs: u32,
        /// This build's version.
        ours: u32,
    },
    /// The peer was built from another program, or the same program given other inputs.
    #[error(
        "graph fingerprint {theirs:016x} differs from the scheduler's {ours:016x}: driver and \
         workers must run the same program, with the same pipeline, samples and partitioning"
    )]
    Fingerprint {
        /// The worker's fingerprint.
        theirs: u64,
        /// The scheduler's fingerprint.
        ours: u64,
    },
    /// The scheduler refused this worker.
    #[error("the scheduler refused this worker: {0}")]
    Rejected(String),
}

/// Writes one frame, without flushing (a buffered writer gathers several
/// frames into one write; flush it when a batch is complete).
///
/// # Errors
/// [`WireError::Io`], or [`WireError::TooLarge`] for a payload over 4 GiB.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), WireError> {
    let len = u32::try_from(payload.len()).map_err(|_| WireError::TooLarge {
        len: payload.len(),
        max: u32::MAX as usize,
    })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)?;
    Ok(())
}

/// Reads one frame into `buf`, refusing one longer than `max` before
/// allocating anything for it.
///
/// # Errors
/// [`WireError::TooLarge`], or [`WireError::Io`] when the connection closes.
pub fn read_frame(r: &mut impl Read, max: usize, buf: &mut Vec<u8>) -> Result<(), WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(())
}

/// Sends one message and flushes.
///
/// # Errors
/// As [`write_frame`], or [`WireError::Malformed`] when it does not serialize.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), WireError> {
    write_frame(w, &encode(msg)?)?;
    w.flush()?;
    Ok(())
}

/// A message's frame payload.
///
/// # Errors
/// [`WireError::Malformed`] when it does not serialize.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    rmp_serde::to_vec_named(msg).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Receives one message.
///
/// # Errors
/// As [`read_frame`], or [`WireError::Malformed`] for bytes that are not a `T`.
pub fn recv<T: DeserializeOwned>(r: &mut impl Read, max: usize) -> Result<T, WireError> {
    let mut buf = Vec::new();
    read_frame(r, max, &mut buf)?;
    rmp_serde::from_slice(&buf).map_err(|e| WireError::Malformed(e.to_string()))
}

/// A run's shared secret: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// 32 bytes from the operating system's random source.
pub(crate) fn random32() -> io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

impl Secret {
    /// A new random secret.
    ///
    /// # Errors
    /// When the system's random source cannot be read.
    pub fn random() -> io::Result<Self> {
        random32().map(Secret)
    }

    fn proof(&self, role: &[u8], nonce: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(role);
        mac.update(nonce);
        mac.finalize().into_bytes().to_vec()
    }

    fn verify(&self, role: &[u8], nonce: &[u8], proof: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(role);
        mac.update(nonce);
        mac.verify_slice(proof).is_ok()
    }
}

/// A secret written to a file that only its owner can read (mode 0600),
/// removed when dropped. Workers get the file's path, never the secret itself.
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    secret: Secret,
}

impl SecretFile {
    /// The prefix of every secret file's name.
    const NAME: &'static str = "bob-pipelines-secret";

    /// Creates a new random secret in a new file in `dir` (which should be
    /// private to the user and, for a cluster, shared with the workers' hosts).
    /// The file's name says which host and process own it, so the secret
    /// files that killed drivers left in `dir` are recognised and removed
    /// here (a driver removes its own when it ends).
    ///
    /// # Errors
    /// When the random source or the file cannot be used.
    pub fn create(dir: &Path) -> io::Result<Self> {
        Self::remove_stale(dir);
        let secret = Secret::random()?;
        let unique: String = random32()?[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = dir.join(bob_pipelines_checkpoint::owned_name(Self::NAME, &unique));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let hex: String = secret.0.iter().map(|b| format!("{b:02x}")).collect();
        f.write_all(hex.as_bytes())?;
        f.sync_all()?;
        Ok(SecretFile { path, secret })
    }

    /// Removes the secret files in `dir` whose driver is gone (a dead process
    /// on this host, or a day old from another); returns how many.
    pub fn remove_stale(dir: &Path) -> usize {
        let prefix = format!(".{}", Self::NAME);
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    && bob_pipelines_checkpoint::is_stale_temp(p)
            })
            .filter(|p| fs::remove_file(p).is_ok())
            .count()
    }

    /// The file's path: what a worker is given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a secret from a file [`SecretFile`] wrote.
///
/// # Errors
/// When the file cannot be read, or holds something other than 64 hex digits.
pub fn read_secret(path: &Path) -> io::Result<Secret> {
    let text = fs::read_to_string(path)?;
    let text = text.trim();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold a secret", path.display()),
        )
    };
    if text.len() != 64 {
        return Err(bad());
    }
    let mut b = [0u8; 32];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(Secret(b))
}

/// What a scheduler sends first.
#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    protocol: u32,
    #[serde(with = "bob_pipelines_sample::bin")]
    nonce: Vec<u8>,
}

/// 16 random bytes in hex: a token for a URL (the dashboard's), not the
/// run's secret.
///
/// # Errors
/// When the system's random source cannot be read.
pub fn random_token() -> io::Result<String> {
    Ok(random32()?[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What a worker says about itself, with its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The graph fingerprint the worker built.
    pub fingerprint: u64,
    /// The resources the worker provides (`q_short_gpu`, `io_big`, …).
    pub resources: Vec<String>,
    /// How many threads it runs tasks on.
    pub threads: u32,
    /// A name for reports: host and pid, or the cluster's job id.
    pub name: String,
    /// Where other workers fetch the partitions it holds (`host:port`);
    /// empty when it serves none (a peer asking, on the peer port).
    pub peer: String,
    /// How long it has left to live, in milliseconds (its job's time limit
    /// less what it has run; 0: no limit).
    #[serde(default)]
    pub lifetime_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    protocol: u32,
    #[serde(with = "bob_pipelines_sample::bin")]
    proof: Vec<u8>,
    #[serde(with = "bob_pipelines_sample::bin")]
    nonce: Vec<u8>,
    info: WorkerInfo,
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Welcome {
        #[serde(with = "bob_pipelines_sample::bin")]
        proof: Vec<u8>,
        worker: u32,
    },
    Rejected {
        reason: String,
    },
}

/// Handshake messages are small: a peer announcing more is not one of ours.
const HANDSHAKE_MAX: usize = 64 << 10;

/// The scheduler's side of the handshake on a fresh connection: returns what
/// the authenticated worker said, once it has been welcomed as `worker`.
/// Callers set a read timeout on the connection first, so a silent peer cannot
/// hold it open.
///
/// # Errors
/// [`WireError::Unauthenticated`] (the connection is closed unanswered),
/// [`WireError::Protocol`] or [`WireError::Fingerprint`] (the worker is told why),
/// or an I/O or malformed-message error.
pub fn accept<S: Read + Write>(
    conn: &mut S,
    secret: &Secret,
    fingerprint: u64,
    worker: u32,
) -> Result<WorkerInfo, WireError> {
    accept_at(conn, secret, fingerprint, worker).map(|(info, _)| info)
}

/// [`accept`], and the moment just before the welcome went out: the peer
/// reads it later, so its clock for the ends of its runs starts after this.
fn accept_at<S: Read + Write>(
    conn: &mut S,
    secret: &Secret,
    fingerprint: u64,
    worker: u32,
) -> Result<(WorkerInfo, Instant), WireError> {
    let nonce = random32()?.to_vec();
    send(
        conn,
        &Challenge {
            protocol: PROTOCOL,
            nonce: nonce.clone(),
        },
    )?;
    let hello: Hello = recv(conn, HANDSHAKE_MAX).map_err(|e| match e {
        // Garbage where a proof goes is no proof.
        WireError::Malformed(_) | WireError::TooLarge { .. } => WireError::Unauthenticated,
        e => e,
    })?;
    if !secret.verify(b"worker", &nonce, &hello.proof) {
        return Err(WireError::Unauthenticated);
    }
    let refuse = |conn: &mut S, e: WireError| {
        let _ = send(
            conn,
            &Answer::Rejected {
                reason: e.to_string(),
            },
        );
        Err(e)
    };
    if hello.protocol != PROTOCOL {
        return refuse(
            conn,
            WireError::Protocol {
                theirs: hello.protocol,
                ours: PROTOCOL,
            },
        );
    }
    if hello.info.fingerprint != fingerprint {
        return refuse(
            conn,
            WireError::Fingerprint {
                theirs: hello.info.fingerprint,
                ours: fingerprint,
            },
        );
    }
    let at = Instant::now();
    send(
        conn,
        &Answer::Welcome {
            proof: secret.proof(b"scheduler", &hello.nonce),
            worker,
        },
    )?;
    Ok((hello.info, at))
}

/// The worker's side of the handshake: returns the worker number the
/// scheduler gave it.
///
/// # Errors
/// [`WireError::Rejected`] with the scheduler's reason (fingerprint or
/// protocol), [`WireError::Unauthenticated`] when the scheduler cannot prove it
/// knows the secret, or an I/O or malformed-message error (a scheduler that
/// closes the connection without answering did not accept this worker's proof).
pub fn connect<S: Read + Write>(
    conn: &mut S,
    secret: &Secret,
    info: WorkerInfo,
) -> Result<u32, WireError> {
    let challenge: Challenge = recv(conn, HANDSHAKE_MAX)?;
    let nonce = random32()?.to_vec();
    send(
        conn,
        &Hello {
            protocol: PROTOCOL,
            proof: secret.proof(b"worker", &challenge.nonce),
            nonce: nonce.clone(),
            info,
        },
    )?;
    match recv::<Answer>(conn, HANDSHAKE_MAX)? {
        Answer::Welcome { proof, worker } if secret.verify(b"scheduler", &nonce, &proof) => {
            Ok(worker)
        }
        Answer::Welcome { .. } => Err(WireError::Unauthenticated),
        Answer::Rejected { reason } => Err(WireError::Rejected(reason)),
    }
}

/// A connection: TCP, or a Unix socket when both ends are on one machine.
/// On one machine a Unix socket costs the scheduler less per message than
/// loopback TCP: no acknowledgements to send on each read, and no TCP
/// receive path run in the sender (the `scale` benchmark: see the README).
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix socket connection.
    Unix(UnixStream),
}

/// Applies one method to either kind of socket.
macro_rules! either {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            Stream::Tcp($x) => $e,
            Stream::Unix($x) => $e,
        }
    };
}

impl Stream {
    /// Connects to `addr`: `unix:@<name>` (an abstract Unix socket, where
    /// the scheduler of workers on its own machine listens), or
    /// `host:port`.
    ///
    /// # Errors
    /// When nothing listens there.
    pub fn connect(addr: &str) -> io::Result<Stream> {
        use std::os::linux::net::SocketAddrExt as _;
        match addr.strip_prefix(UNIX_PREFIX) {
            Some(name) => {
                let at = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                UnixStream::connect_addr(&at).map(Stream::Unix)
            }
            None => TcpStream::connect(addr).map(Stream::Tcp),
        }
    }

    /// Another handle to the same connection.
    ///
    /// # Errors
    /// When the system has no descriptor left.
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }

    /// Makes reads and writes return at once when they would wait.
    ///
    /// # Errors
    /// As the socket's.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        either!(self, s => s.set_nonblocking(on))
    }

    /// The longest a read waits (`None`: for ever).
    ///
    /// # Errors
    /// As the socket's (a zero duration is an error).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_read_timeout(t))
    }

    /// The longest a write waits (`None`: for ever).
    ///
    /// # Errors
    /// As the socket's (a zero duration is an error).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        either!(self, s => s.set_write_timeout(t))
    }

    /// Shuts the reading or writing half, or both, down.
    ///
    /// # Errors
    /// As the socket's.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }

    /// Readies a connection between the scheduler and a worker: small
    /// messages go at once (TCP), and a Unix socket may hold
    /// [`UNIX_SEND_BUFFER`] unread.
    pub(crate) fn tune(&self) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
            }
            Stream::Unix(s) => {
                let _ = set_send_buffer(s.as_raw_fd(), UNIX_SEND_BUFFER);
            }
        }
    }

    /// The address this end has (a Unix socket is on this machine:
    /// 127.0.0.1).
    pub(crate) fn local_ip(&self) -> io::Result<IpAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().map(|a| a.ip()),
            Stream::Unix(_) => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, s => s.read(buf))
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(*self, s => (&mut &*s).read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(self, s => s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(*self, s => (&mut &*s).write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        either!(self, s => s.as_raw_fd())
    }
}

/// What a Unix socket between the scheduler and a worker may hold unread.
/// A worker ships outputs of megabytes while the scheduler's thread decodes
/// others: with the system's default (208 KiB) the worker waits for the
/// scheduler at every partition (the seed benchmark's `local-p2`: a third
/// slower than on TCP, whose buffers grow to megabytes on their own).
pub(crate) const UNIX_SEND_BUFFER: usize = 4 << 20;

/// Asks for a send buffer of `bytes` on socket `fd`; what the system gave
/// (Linux doubles the request for its bookkeeping, and caps it at
/// `net.core.wmem_max`).
#[allow(unsafe_code)]
fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let mut got: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: both calls get a valid descriptor and a pointer to a live
    // c_int of the length they are given, for the call's duration.
    let rc = unsafe {
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const want).cast(),
            len,
        );
        if set < 0 {
            set
        } else {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw mut got).cast(),
                &raw mut len,
            )
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(got).unwrap_or(0))
}

/// Whether this system lets a Unix socket hold [`UNIX_SEND_BUFFER`]
/// unread (`net.core.wmem_max` at least that). Where it does not, workers
/// on this machine reach the scheduler over TCP.
pub(crate) fn unix_sockets_hold_enough() -> bool {
    let Ok((a, _b)) = UnixStream::pair() else {
        return false;
    };
    set_send_buffer(a.as_raw_fd(), UNIX_SEND_BUFFER).is_ok_and(|got| got >= UNIX_SEND_BUFFER)
}

/// How an address names an abstract Unix socket: `unix:@<name>`.
pub(crate) const UNIX_PREFIX: &str = "unix:@";

/// A port for workers on this machine: an abstract Unix socket (Linux),
/// which has no file to leave behind when the driver is killed, with a
/// random name; its address (`unix:@bob-pipelines-<pid>-<random>`) and
/// listener. Like the loopback TCP port it replaces, any process of the
/// machine may connect: the handshake admits only those with the run's
/// secret. `None` where none can be made, or where the system keeps Unix
/// sockets' buffers small ([`unix_sockets_hold_enough`]).
pub(crate) fn bind_local() -> Option<(String, UnixListener)> {
    use std::os::linux::net::SocketAddrExt as _;
    if !unix_sockets_hold_enough() {
        return None;
    }
    let nonce: String = random32().ok()?[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = format!("bob-pipelines-{}-{nonce}", std::process::id());
    let at = std::os::unix::net::SocketAddr::from_abstract_name(&name).ok()?;
    let listener = UnixListener::bind_addr(&at).ok()?;
    Some((format!("{UNIX_PREFIX}{name}"), listener))
}

/// A port that accepts [`Stream`]s.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// The next connection, and who made it (for messages).
    fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), a.to_string())),
            Listener::Unix(l) => l
                .accept()
                .map(|(s, _)| (Stream::Unix(s), "a process of this machine".to_owned())),
        }
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix(l) => l.set_nonblocking(on),
        }
    }

    /// Another handle to the same port.
    pub(crate) fn try_clone(&self) -> io::Result<Listener> {
        match self {
            Listener::Tcp(l) => l.try_clone().map(Listener::Tcp),
            Listener::Unix(l) => l.try_clone().map(Listener::Unix),
        }
    }

    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// How many connections may be in their handshake at once: beyond it, a new
/// connection is closed at once (a flood or a port scan cannot hold the
/// scheduler's threads and descriptors).
pub(crate) const MAX_HANDSHAKES: usize = 64;

/// A connection in its handshake, with an overall deadline: each read or
/// write may take only what is left of it, so a peer that trickles a byte at
/// a time is cut off all the same.
struct Deadline<'s> {
    stream: &'s Stream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake took longer than its deadline",
            ));
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&mut &*self.stream).flush()
    }
}

/// Gives a handshake slot back when its thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What became of a connection to a port whose peers must prove the run's
/// secret: the scheduler's port, or a worker's peer port.
pub(crate) enum Arrival {
    /// Authenticated, as connection number `id`.
    Joined {
        /// The connection's number on this port.
        id: u32,
        /// What the peer said about itself.
        info: WorkerInfo,
        /// The connection, blocking, with a 10 s write timeout.
        stream: Stream,
        /// When the welcome went out: a worker's clock for the ends of its
        /// runs starts after it (a worker's peer port ignores it).
        at: Instant,
    },
    /// Not one of the run's (or it failed its handshake); closed.
    Refused {
        /// Who connected.
        peer: String,
        /// Why it was refused.
        error: WireError,
    },
    /// Closed at once: too many were in their handshake.
    TurnedAway,
}

/// How often an idle acceptor looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Waits until `listener` has a connection to accept, or `timeout`.
/// (It polled `accept` every 5 ms: with 128 workers, each with a peer port,
/// 25 600 wake-ups a second of two cores, and the scheduler's driver CPU
/// per task rose with them.) std cannot wait on a listener with a timeout.
fn wait_for_connection(listener: &Listener, timeout: Duration) {
    // Whatever the outcome (a connection, the timeout, an interruption),
    // the caller tries `accept` again.
    let _ = wait_readable(listener.as_raw_fd(), Some(timeout));
}

/// Waits until `fd` has something to read, or `timeout` (`None`: for
/// ever); whether it has.
///
/// # Errors
/// As `poll(2)`'s (an interrupted wait is `Interrupted`).
#[allow(unsafe_code)]
pub(crate) fn wait_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let mut fd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: `fd` is one valid pollfd for the call's duration; the caller
    // keeps its descriptor open while it waits.
    let n = unsafe { libc::poll(&raw mut fd, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0)
}

/// Accepts connections until `stop`; each is authenticated on its own
/// thread within `deadline`, and at most `cap` at once, so a silent, slow or
/// hostile peer holds up no one. Each outcome goes to `on`, from the thread
/// that saw it; `on` returning false stops the acceptor.
pub(crate) fn accept_peers(
    listener: Listener,
    secret: Secret,
    fingerprint: u64,
    (deadline, cap): (Duration, usize),
    on: impl Fn(Arrival) -> bool + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let open = Arc::new(AtomicUsize::new(0));
    let on = Arc::new(on);
    std::thread::spawn(move || {
        let mut next = 0u32;
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if open.load(Ordering::Acquire) >= cap {
                        let _ = stream.shutdown(Shutdown::Both);
                        if !on(Arrival::TurnedAway) {
                            return;
                        }
                        continue;
                    }
                    open.fetch_add(1, Ordering::AcqRel);
                    let slot = Slot(open.clone());
                    next += 1;
                    let id = next;
                    let (secret, on) = (secret.clone(), on.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let mut conn = Deadline {
                            stream: &stream,
                            until: Instant::now() + deadline,
                        };
                        let outcome = accept_at(&mut conn, &secret, fingerprint, id);
                        drop(slot);
                        let arrival = match outcome {
                            Ok((info, at)) => {
                                let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                                Arrival::Joined {
                                    id,
                                    info,
                                    stream,
                                    at,
                                }
                            }
                            Err(error) => {
                                let _ = stream.shutdown(Shutdown::Both);
                                Arrival::Refused { peer, error }
                            }
                        };
                        on(arrival);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_for_connection(&listener, STOP_CHECK);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn info(fingerprint: u64) -> WorkerInfo {
        WorkerInfo {
            fingerprint,
            resources: vec!["q_short_gpu".into()],
            threads: 2,
            name: "test".into(),
            peer: String::new(),
            lifetime_ms: 0,
        }
    }

    /// A scheduler on 127.0.0.1 that accepts one connection; returns its
    /// address and a handle that yields the handshake's outcome.
    fn scheduler(
        secret: Secret,
        fingerprint: u64,
    ) -> (
        std::net::SocketAddr,
        std::thread::JoinHandle<Result<WorkerInfo, WireError>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            accept(&mut c, &secret, fingerprint, 7)
        });
        (addr, h)
    }

    #[test]
    fn a_local_port_takes_connections_and_leaves_nothing_behind() {
        if !unix_sockets_hold_enough() {
            eprintln!("skipped: Unix sockets here hold less than 4 MiB; the scheduler uses TCP");
            return;
        }
        let (addr, listener) = bind_local().unwrap();
        assert!(addr.starts_with("unix:@bob-pipelines-"), "{addr}");
        let mut c = Stream::connect(&addr).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        c.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(listener);
        assert!(
            Stream::connect(&addr).is_err(),
            "{addr} still takes connections"
        );
    }

    #[test]
    fn a_tuned_unix_socket_holds_what_the_probe_says_or_the_scheduler_uses_tcp() {
        let (a, _b) = UnixStream::pair().unwrap();
        let before = set_send_buffer(a.as_raw_fd(), 1 << 16).unwrap();
        assert!(before >= 1 << 16, "{before}");
        Stream::Unix(a.try_clone().unwrap()).tune();
        let tuned = set_send_buffer(a.as_raw_fd(), UNIX_SEND_BUFFER).unwrap();
        assert_eq!(
            tuned >= UNIX_SEND_BUFFER,
            unix_sockets_hold_enough(),
            "{tuned} bytes"
        );
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused_unallocated() {
        let mut wire = Vec::new();
        send(&mut wire, &("hello", 42u32)).unwrap();
        let back: (String, u32) = recv(&mut wire.as_slice(), 1024).unwrap();
        assert_eq!(back, ("hello".to_owned(), 42));
        // A 1 GiB length prefix followed by nothing: refused at once.
        let mut huge = (1u32 << 30).to_le_bytes().to_vec();
        huge.extend_from_slice(b"x");
        let t0 = Instant::now();
        let e = recv::<u32>(&mut huge.as_slice(), DEFAULT_MAX_FRAME).unwrap_err();
        assert!(
            matches!(e, WireError::TooLarge { len, .. } if len == 1 << 30),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_millis(50));
        // Truncated and garbage frames are errors, not panics.
        assert!(matches!(
            recv::<u32>(&mut &wire[..3], 1024),
            Err(WireError::Io(_))
        ));
        let mut garbage = Vec::new();
        write_frame(&mut garbage, b"\xc1\xc1\xc1").unwrap();
        assert!(matches!(
            recv::<(String, u32)>(&mut garbage.as_slice(), 1024),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn the_right_secret_is_welcomed_both_ways() {
        let secret = Secret::random().unwrap();
        let (addr, s) = scheduler(secret.clone(), 99);
        let mut c = TcpStream::connect(addr).unwrap();
        assert_eq!(connect(&mut c, &secret, info(99)).unwrap(), 7);
        assert_eq!(s.join().unwrap().unwrap(), info(99));
    }

    #[test]
    fn a_wrong_secret_is_closed_on_unanswered() {
        let (addr, s) = scheduler(Secret::random().unwrap(), 99);
        let mut c = TcpStream::connect(addr).unwrap();
        let e = connect(&mut c, &Secret::random().unwrap(), info(99)).unwrap_err();
        assert!(
            matches!(e, WireError::Io(_)),
            "the scheduler says nothing: {e}"
        );
        assert!(matches!(s.join().unwrap(), Err(WireError::Unauthenticated)));
    }

    #[test]
    fn random_bytes_and_a_huge_length_prefix_are_refused() {
        for junk in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            (1u32 << 30).to_le_bytes().to_vec(),
        ] {
            let (addr, s) = scheduler(Secret::random().unwrap(), 1);
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&junk).unwrap();
            let outcome = s.join().unwrap();
            assert!(
                matches!(outcome, Err(WireError::Unauthenticated)),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_fingerprint_mismatch_is_explained_to_both_ends() {
        let secret = Secret::random().unwrap();
        let (addr, s) = scheduler(secret.clone(), 0xabc);
        let mut c = TcpStream::connect(addr).unwrap();
        let worker_side = connect(&mut c, &secret, info(0xdef))
            .unwrap_err()
            .to_string();
        let scheduler_side = s.join().unwrap().unwrap_err().to_string();
        for msg in [&worker_side, &scheduler_side] {
            assert!(
                msg.contains("0000000000000def")
                    && msg.contains("0000000000000abc")
                    && msg.contains("same program"),
                "{msg}"
            );
        }
    }

    #[test]
    fn secret_files_are_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir();
        let f = SecretFile::create(&dir).unwrap();
        let mode = fs::metadata(f.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(&read_secret(f.path()).unwrap(), f.secret());
        assert_eq!(format!("{:?}", f.secret()), "Secret(..)");
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists(), "removed when dropped");
        let junk = dir.join(format!("bp-not-a-secret-{}", std::process::id()));
        fs::write(&junk, "xyz").unwrap();
        assert!(read_secret(&junk).is_err());
        fs::remove_file(junk).unwrap();
    }

    #[test]
    fn secret_files_of_dead_drivers_are_removed_by_the_next_one() {
        let dir = std::env::temp_dir().join(format!("bp-secrets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let live = SecretFile::create(&dir).unwrap();
        // What a driver killed on this host left: its pid is no process.
        let name = bob_pipelines_checkpoint::owned_name(SecretFile::NAME, "00ff");
        let host_and_pid = format!("-{}-", std::process::id());
        let dead = dir.join(name.replace(&host_and_pid, "-999999999-"));
        fs::write(&dead, "x").unwrap();
        let other = dir.join("unrelated.tmp-file");
        fs::write(&other, "x").unwrap();
        let next = SecretFile::create(&dir).unwrap();
        assert!(!dead.exists(), "a dead driver's secret is removed");
        assert!(live.path().exists() && next.path().exists() && other.exists());
        drop((live, next));
        fs::remove_dir_all(&dir).unwrap();
    }
}
