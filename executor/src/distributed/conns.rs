//! The scheduler's connections to its workers, read and written by the
//! scheduler's own thread: one `epoll(7)` set of every worker socket and a
//! wake pipe (a wait costs what is ready, not how many workers there are),
//! nonblocking reads parsed into messages as bytes arrive, and one output
//! buffer per worker written as far as the socket takes it. No thread
//! per connection: a message costs no thread switch between reading it,
//! deciding, and answering (with a reader and a writer thread per worker,
//! 128 workers cost the driver 80–95 µs of CPU per task, about half of it
//! the kernel waking threads).
//!
//! Other threads (the acceptor, the driver's own threads) hand the
//! scheduler their events over a channel and wake its `poll` with a byte on
//! the wake pipe ([`Wake`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::protocol::{FromWorker, MAX_DATA_FRAME, MAX_MESSAGE, ToWorker, frame_into};
use crate::wire::{Stream, WireError};

/// Sends events to the scheduler's thread and wakes its `poll`.
pub(crate) struct Wake<E> {
    tx: Sender<E>,
    pipe: Arc<UnixStream>,
}

impl<E> Clone for Wake<E> {
    fn clone(&self) -> Self {
        Wake {
            tx: self.tx.clone(),
            pipe: Arc::clone(&self.pipe),
        }
    }
}

impl<E> Wake<E> {
    /// Sends `event`; false when the scheduler is gone.
    pub(crate) fn send(&self, event: E) -> bool {
        if self.tx.send(event).is_err() {
            return false;
        }
        // A full pipe already wakes the poll.
        let _ = (&*self.pipe).write(&[1]);
        true
    }
}

/// What came from the workers' sockets.
pub(crate) enum Incoming {
    /// A message, with the data frame that followed it (a `Done` that
    /// shipped its output).
    Msg {
        id: u32,
        msg: FromWorker,
        data: Option<Vec<u8>>,
    },
    /// The connection closed, failed, or sent what is not a message.
    Lost { id: u32, reason: String },
}

/// One worker's connection.
struct Conn {
    stream: Stream,
    /// Bytes read and not parsed yet, from `start`.
    inbuf: Vec<u8>,
    start: usize,
    /// A `Done` whose data frame has not arrived yet.
    pending: Option<FromWorker>,
    /// Bytes to write, from `sent`.
    outbuf: Vec<u8>,
    sent: usize,
    last_read: Instant,
    /// When a message was last queued for it.
    last_sent: Instant,
    /// Leaving: closed once its buffer is written.
    closing: bool,
}

impl Conn {
    /// A new connection on `stream`, nothing read or queued yet.
    fn new(stream: Stream) -> Self {
        Conn {
            stream,
            inbuf: Vec::new(),
            start: 0,
            pending: None,
            outbuf: Vec::new(),
            sent: 0,
            last_read: Instant::now(),
            last_sent: Instant::now(),
            closing: false,
        }
    }

    fn queue(&mut self, msg: &ToWorker, frames: &[&[u8]]) {
        if frame_into(&mut self.outbuf, msg).is_err() {
            return;
        }
        self.last_sent = Instant::now();
        for f in frames {
            let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
            self.outbuf.extend_from_slice(&len.to_le_bytes());
            self.outbuf.extend_from_slice(f);
        }
    }

    /// Writes what the socket takes now; the bytes written, or the error.
    fn flush(&mut self) -> std::io::Result<usize> {
        let mut n = 0;
        while self.sent < self.outbuf.len() {
            match self.stream.write(&self.outbuf[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(k) => {
                    self.sent += k;
                    n += k;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.outbuf.len() {
            self.outbuf.clear();
            self.sent = 0;
        }
        Ok(n)
    }

    /// Reads what arrived (through `chunk`); the bytes read, and whether
    /// the peer closed.
    fn fill(&mut self, chunk: &mut [u8]) -> std::io::Result<(usize, bool)> {
        let mut n = 0;
        loop {
            match self.stream.read(chunk) {
                Ok(0) => return Ok((n, true)),
                Ok(k) => {
                    self.inbuf.extend_from_slice(&chunk[..k]);
                    n += k;
                    // A short read took all there was (the poll says when
                    // more comes: it is level-triggered), which saves a
                    // read that would only say so. Past 4 MiB, other
                    // workers have their turn.
                    if k < chunk.len() || n >= 4 << 20 {
                        return Ok((n, false));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok((n, false)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Where the next whole frame read lies in `inbuf`, if it is whole
    /// (`max`: the largest accepted); the frame then counts as read.
    fn frame(&mut self, max: usize) -> Result<Option<Range<usize>>, WireError> {
        let buf = &self.inbuf[self.start..];
        let Some(len) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > max {
            return Err(WireError::TooLarge { len, max });
        }
        if buf.len() < 4 + len {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start = at + len;
        Ok(Some(at..at + len))
    }

    /// Drops the frames read from `inbuf`, moving what is left to its
    /// front when that is less than what was read.
    fn compact(&mut self) {
        if self.start == self.inbuf.len() {
            self.inbuf.clear();
            self.start = 0;
        } else if self.start > self.inbuf.len() / 2 {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
    }

    /// The messages whole in the buffer. A message is decoded where it
    /// lies; only a data frame is copied out.
    fn messages(&mut self, id: u32, out: &mut Vec<Incoming>) -> Result<(), WireError> {
        let parsed = self.parse(id, out);
        self.compact();
        parsed
    }

    fn parse(&mut self, id: u32, out: &mut Vec<Incoming>) -> Result<(), WireError> {
        loop {
            if let Some(msg) = self.pending.take() {
                let Some(data) = self.frame(MAX_DATA_FRAME)? else {
                    self.pending = Some(msg);
                    return Ok(());
                };
                out.push(Incoming::Msg {
                    id,
                    msg,
                    data: Some(self.inbuf[data].to_vec()),
                });
                continue;
            }
            let Some(bytes) = self.frame(MAX_MESSAGE)? else {
                return Ok(());
            };
            let msg: FromWorker = rmp_serde::from_slice(&self.inbuf[bytes])
                .map_err(|e| WireError::Malformed(e.to_string()))?;
            if matches!(
                msg,
                FromWorker::Done { shipped: true, .. } | FromWorker::Handed { held: true, .. }
            ) {
                self.pending = Some(msg);
            } else {
                out.push(Incoming::Msg {
                    id,
                    msg,
                    data: None,
                });
            }
        }
    }
}

/// The key of the wake pipe in the epoll set (workers' are their ids).
const WAKE: u64 = u64::MAX;

/// Every worker's connection, and the wake pipe.
pub(crate) struct Conns {
    conns: BTreeMap<u32, Conn>,
    wake: UnixStream,
    epoll: OwnedFd,
    /// Connections whose socket is watched for room to write.
    watching_out: BTreeSet<u32>,
    /// Connections with bytes queued since the last flush.
    dirty: BTreeSet<u32>,
    /// Where reads land before they are parsed.
    chunk: Vec<u8>,
    /// Bytes read from and written to workers' sockets.
    pub(crate) read: u64,
    pub(crate) written: u64,
}

impl Conns {
    /// No connections yet; events sent through the returned [`Wake`] wake
    /// [`poll`](Self::poll).
    pub(crate) fn new<E>(tx: Sender<E>) -> std::io::Result<(Self, Wake<E>)> {
        let (wake, pipe) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        pipe.set_nonblocking(true)?;
        let epoll = epoll_create()?;
        epoll_ctl(
            &epoll,
            libc::EPOLL_CTL_ADD,
            wake.as_raw_fd(),
            libc::EPOLLIN,
            WAKE,
        )?;
        let conns = Conns {
            conns: BTreeMap::new(),
            wake,
            epoll,
            watching_out: BTreeSet::new(),
            dirty: BTreeSet::new(),
            chunk: vec![0; 64 << 10],
            read: 0,
            written: 0,
        };
        Ok((
            conns,
            Wake {
                tx,
                pipe: Arc::new(pipe),
            },
        ))
    }

    /// Worker `id`'s authenticated connection.
    pub(crate) fn add(&mut self, id: u32, stream: Stream) {
        let watched = epoll_ctl(
            &self.epoll,
            libc::EPOLL_CTL_ADD,
            stream.as_raw_fd(),
            libc::EPOLLIN,
            u64::from(id),
        );
        if stream.set_nonblocking(true).is_err() || watched.is_err() {
            return;
        }
        stream.tune();
        self.conns.insert(id, Conn::new(stream));
    }

    /// Whether worker `id` is connected.
    pub(crate) fn has(&self, id: u32) -> bool {
        self.conns.contains_key(&id)
    }

    /// Queues a message and its frames for worker `id` (written by
    /// [`flush`](Self::flush)); nothing when it is gone.
    pub(crate) fn send(&mut self, id: u32, msg: &ToWorker, frames: &[&[u8]]) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.queue(msg, frames);
            self.dirty.insert(id);
        }
    }

    /// Queues a heartbeat for every worker sent nothing for `quiet`: any
    /// message tells a worker its scheduler lives, and at 128 workers a
    /// heartbeat each per interval was a tenth of the messages sent.
    pub(crate) fn heartbeat(&mut self, quiet: Duration) {
        for (&id, c) in &mut self.conns {
            if c.last_sent.elapsed() >= quiet {
                c.queue(&ToWorker::Heartbeat, &[]);
                self.dirty.insert(id);
            }
        }
    }

    /// Tells worker `id` to leave; its connection closes once that is
    /// written. No message from it counts any more.
    pub(crate) fn release(&mut self, id: u32) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.queue(&ToWorker::Shutdown, &[]);
            c.closing = true;
            self.dirty.insert(id);
        }
    }

    /// Closes worker `id`'s connection at once.
    pub(crate) fn drop_conn(&mut self, id: u32) {
        if let Some(c) = self.conns.remove(&id) {
            let fd = c.stream.as_raw_fd();
            let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        self.watching_out.remove(&id);
    }

    /// Whether a transfer is under way: bytes left to write to a worker, or
    /// part of a message or of its data read. The scheduler then polls
    /// without letting answers gather: a big frame moves a socket buffer
    /// per poll.
    pub(crate) fn busy(&self) -> bool {
        !self.watching_out.is_empty()
            || self
                .conns
                .values()
                .any(|c| c.start < c.inbuf.len() || c.pending.is_some())
    }

    /// Writes every buffer queued to since the last flush as far as its
    /// socket takes it (the rest when the socket has room: [`poll`](Self::poll));
    /// a worker whose socket fails is lost.
    pub(crate) fn flush(&mut self, out: &mut Vec<Incoming>) {
        for id in std::mem::take(&mut self.dirty) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            match c.flush() {
                Ok(n) => self.written += n as u64,
                Err(e) if !c.closing => out.push(Incoming::Lost {
                    id,
                    reason: format!("writing to it: {e}"),
                }),
                Err(_) => {}
            }
            self.settle(id);
        }
    }

    /// After writing to worker `id`: closes a leaving connection whose
    /// buffer is written, and watches the socket for room to write exactly
    /// while bytes are left.
    fn settle(&mut self, id: u32) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.closing && c.outbuf.is_empty() {
            self.drop_conn(id);
            return;
        }
        let want = !c.outbuf.is_empty();
        if want == self.watching_out.contains(&id) {
            return;
        }
        let events = if want {
            libc::EPOLLIN | libc::EPOLLOUT
        } else {
            libc::EPOLLIN
        };
        let fd = c.stream.as_raw_fd();
        if epoll_ctl(&self.epoll, libc::EPOLL_CTL_MOD, fd, events, u64::from(id)).is_ok() {
            if want {
                self.watching_out.insert(id);
            } else {
                self.watching_out.remove(&id);
            }
        }
    }

    /// Waits up to `timeout` for bytes from workers or a wake, and returns
    /// what arrived: messages and lost connections (a closed one, or one
    /// whose bytes are not messages). Sockets that can take more output are
    /// written.
    pub(crate) fn poll(&mut self, timeout: Duration, out: &mut Vec<Incoming>) {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let n = epoll_wait(&self.epoll, &mut ready, timeout);
        for ev in &ready[..n] {
            let (flags, key) = (ev.events, ev.u64);
            if key == WAKE {
                let mut sink = [0u8; 256];
                while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
                continue;
            }
            let Ok(id) = u32::try_from(key) else {
                continue;
            };
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if flags & (libc::EPOLLOUT as u32) != 0 {
                if let Ok(n) = c.flush() {
                    self.written += n as u64;
                }
                self.dirty.insert(id); // settled by the next flush
            }
            let readable = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            if flags & readable == 0 {
                continue;
            }
            let lost = match c.fill(&mut self.chunk) {
                Ok((n, closed)) => {
                    self.read += n as u64;
                    if n > 0 {
                        c.last_read = Instant::now();
                    }
                    let parsed = c.messages(id, out);
                    match (parsed, closed) {
                        (Err(e), _) => Some(e.to_string()),
                        (Ok(()), true) => Some("connection closed".to_owned()),
                        (Ok(()), false) => None,
                    }
                }
                Err(e) => Some(e.to_string()),
            };
            if c.closing {
                // Leaving: what it says no longer counts.
                out.retain(|i| !matches!(i, Incoming::Msg { id: m, .. } if *m == id));
                if lost.is_some() {
                    self.drop_conn(id);
                }
            } else if let Some(reason) = lost {
                out.push(Incoming::Lost { id, reason });
            }
        }
    }

    /// Workers that have sent nothing for `silence` (not even a heartbeat).
    pub(crate) fn silent(&self, silence: Duration) -> Vec<u32> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.closing && c.last_read.elapsed() >= silence)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Tells every worker to leave, and writes it (for at most `patience`);
    /// those in `keep` are told to wait for the program's next compute
    /// instead, and their connections (blocking again) come back.
    pub(crate) fn shutdown(
        &mut self,
        patience: Duration,
        keep: &BTreeSet<u32>,
    ) -> Vec<(u32, Stream)> {
        let until = Instant::now() + patience;
        for (&id, c) in &mut self.conns {
            if keep.contains(&id) {
                c.queue(&ToWorker::Wait, &[]);
            } else {
                c.queue(&ToWorker::Shutdown, &[]);
                c.closing = true;
            }
            self.dirty.insert(id);
        }
        let mut out = Vec::new();
        while !self.conns.is_empty() && Instant::now() < until {
            self.dirty.extend(self.conns.keys().copied());
            self.flush(&mut out);
            if self.conns.values().all(|c| c.outbuf.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut kept = Vec::new();
        for (id, c) in std::mem::take(&mut self.conns) {
            let fd = c.stream.as_raw_fd();
            let _ = epoll_ctl(&self.epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
            if keep.contains(&id)
                && c.outbuf.len() == c.sent
                && c.stream.set_nonblocking(false).is_ok()
            {
                kept.push((id, c.stream));
            } else {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        }
        kept
    }
}

/// A new epoll set. (std has no way to wait on many sockets at once; these
/// three calls are the only ones this needs.)
#[allow(unsafe_code)]
fn epoll_create() -> std::io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointer; a non-negative result is a
    // new descriptor that nothing else owns.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by epoll_create1 and is owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds, changes or removes `fd` in the set, with `events` and `key`.
#[allow(unsafe_code)]
fn epoll_ctl(
    epoll: &OwnedFd,
    op: libc::c_int,
    fd: RawFd,
    events: libc::c_int,
    key: u64,
) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: u32::try_from(events).unwrap_or(0),
        u64: key,
    };
    // SAFETY: `ev` is a valid epoll_event for the call's duration, and
    // `epoll` an open epoll descriptor.
    let rc = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &raw mut ev) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `timeout` for descriptors of the set to be ready; how many
/// of `ready` it filled (0 on timeout or an interrupted wait).
#[allow(unsafe_code)]
fn epoll_wait(epoll: &OwnedFd, ready: &mut [libc::epoll_event], timeout: Duration) -> usize {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let max = libc::c_int::try_from(ready.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `ready` is a valid, exclusively borrowed array of `max`
    // epoll_event structures for the whole call; the kernel writes at most
    // `max` of them.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), ready.as_mut_ptr(), max, ms) };
    usize::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::protocol::put;

    fn conn() -> Conn {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        Conn::new(Stream::Unix(ours))
    }

    fn done(task: u32, shipped: bool) -> FromWorker {
        FromWorker::Done {
            task,
            samples: 1,
            failed: 0,
            micros: 7,
            ended_us: 9,
            keys: vec!["k".to_owned()],
            shipped,
            read: None,
        }
    }

    #[test]
    fn messages_split_anywhere_come_whole_with_their_data_and_a_huge_length_is_refused() {
        let mut wire = Vec::new();
        put(&mut wire, &done(1, false), &[]).unwrap();
        put(&mut wire, &done(2, true), &[b"output"]).unwrap();
        put(&mut wire, &FromWorker::Draining, &[]).unwrap();
        // Every split point, in two reads.
        for cut in 0..=wire.len() {
            let mut c = conn();
            let mut out = Vec::new();
            c.inbuf.extend_from_slice(&wire[..cut]);
            c.messages(9, &mut out).unwrap();
            c.inbuf.extend_from_slice(&wire[cut..]);
            c.messages(9, &mut out).unwrap();
            let got: Vec<(u32, Option<Vec<u8>>)> = out
                .into_iter()
                .map(|i| match i {
                    Incoming::Msg {
                        id,
                        msg: FromWorker::Done { task, .. },
                        data,
                    } => {
                        assert_eq!(id, 9);
                        (task, data)
                    }
                    Incoming::Msg {
                        msg: FromWorker::Draining,
                        data: None,
                        ..
                    } => (0, None),
                    _ => panic!("not what was sent"),
                })
                .collect();
            assert_eq!(
                got,
                vec![(1, None), (2, Some(b"output".to_vec())), (0, None)],
                "cut at {cut}"
            );
            assert!(c.inbuf.is_empty() && c.start == 0, "cut at {cut}");
        }
        let mut c = conn();
        c.inbuf.extend_from_slice(&(1u32 << 31).to_le_bytes());
        let e = c.messages(9, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, WireError::TooLarge { .. }), "{e}");
    }
}
