//! What a session shows its worker's watch, and what the watch does
//! about it (the worker keeps the table of its sessions and runs the
//! watch; each look at a session is here).
//!
//! Sessions flip a few `Cell`s around each command (idle or busy, since
//! when, whether a reply is awaited); the worker's watch reads them twice
//! a second. That spares the hot path any timer or select per command:
//! - a session idle past its `wait_timeout` has its client socket's read
//!   side shut, which ends its wait for the client (it then closes as
//!   MariaDB closes a timed-out connection);
//! - a session that has awaited a reply for a while has its client socket
//!   peeked at; when the client hung up, the watch shuts the read side of
//!   the backend socket the reply was awaited on, which ends that wait,
//!   and the session stops the statement ([`crate::session`]'s hang-up
//!   handling). The session only writes which socket it awaits: no waker,
//!   no select per reply;
//! - a session whose write to its client has waited past its
//!   `net_write_timeout` (a client that stopped reading a reply) has its
//!   client socket shut both ways, which fails the write: the session
//!   ends, and the backend connection caught mid-reply is closed with it;
//! - at shutdown, idle sessions end.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a reply is awaited before the client socket is looked at:
/// most replies come sooner and cost no system call.
const PEEK_AFTER: Duration = Duration::from_millis(100);

/// What a worker knows of one of its sessions. Written by the session
/// (a few `Cell` writes per command), read by the worker's watch.
#[derive(Default)]
pub struct SessionControl {
    fd: Cell<Option<RawFd>>,
    idle: Cell<bool>,
    /// When the session last went idle or busy.
    since: Cell<Option<Instant>>,
    /// How long the session may stay idle (its `wait_timeout`).
    idle_limit: Cell<Option<Duration>>,
    /// Set by the watch: the session was idle past its limit.
    timed_out: Cell<bool>,
    /// The backend socket a reply is awaited on, while it is.
    reply_fd: Cell<Option<RawFd>>,
    /// Set by the watch: the client hung up while a reply was awaited
    /// (and the watch shut the read side of `reply_fd`).
    hung_up: Cell<bool>,
    /// Since when a write to the client has been waiting, and how long it
    /// may (`net_write_timeout`).
    writing: Cell<Option<(Instant, Duration)>>,
    /// Set by the watch: a write waited past its limit (and the socket
    /// was shut).
    write_timed_out: Cell<bool>,
}

impl std::fmt::Debug for SessionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionControl")
            .field("fd", &self.fd.get())
            .field("idle", &self.idle.get())
            .field("since", &self.since.get())
            .field("timed_out", &self.timed_out.get())
            .field("reply_fd", &self.reply_fd.get())
            .field("hung_up", &self.hung_up.get())
            .field("writing", &self.writing.get())
            .finish_non_exhaustive()
    }
}

impl SessionControl {
    /// Records the client socket.
    pub fn set_fd(&self, fd: RawFd) {
        self.fd.set(Some(fd));
    }

    /// Marks the session as waiting for the client, which it may do for
    /// `limit` at most (`None`: for ever).
    /// Returns the time it read, for a write to the client that starts
    /// with the wait.
    pub fn go_idle(&self, limit: Option<Duration>) -> Instant {
        let now = Instant::now();
        self.idle.set(true);
        self.timed_out.set(false);
        self.idle_limit.set(limit);
        self.since.set(Some(now));
        now
    }

    /// Marks the session as busy with a command; returns how long it was
    /// idle (zero if it was not), and the time it read to know.
    pub fn go_busy(&self) -> (Duration, Instant) {
        let now = Instant::now();
        let idle_for = match (self.idle.get(), self.since.get()) {
            (true, Some(since)) => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        self.idle.set(false);
        self.since.set(Some(now));
        (idle_for, now)
    }

    /// A write to the client starts; it may wait up to `limit` for the
    /// client to read (see [`SessionControl::write_done`]).
    pub fn write_started(&self, limit: Duration) {
        self.write_started_at(limit, Instant::now());
    }

    /// [`SessionControl::write_started`] for a write that starts at
    /// `now`, a time the caller read a moment ago (no clock read here).
    pub fn write_started_at(&self, limit: Duration, now: Instant) {
        self.writing.set(Some((now, limit)));
    }

    /// The write to the client finished (or failed).
    pub fn write_done(&self) {
        self.writing.set(None);
    }

    /// Whether the watch found a write to the client waiting past its
    /// limit, and shut the socket to end it.
    pub fn write_timed_out(&self) -> bool {
        self.write_timed_out.get()
    }

    /// Whether the watch found the session idle past its limit (and shut
    /// its socket's read side).
    pub fn timed_out(&self) -> bool {
        self.timed_out.get()
    }

    /// Marks the session as awaiting a reply on backend socket `fd`, for
    /// as long as the returned guard lives: if the client hangs up
    /// meanwhile, the watch sets [`SessionControl::hung_up`] and shuts the
    /// read side of `fd`, so the wait ends with end-of-file. The fd must
    /// stay open while the guard lives.
    pub fn await_reply(self: &Rc<Self>, fd: RawFd) -> AwaitingReply {
        self.hung_up.set(false);
        self.reply_fd.set(Some(fd));
        AwaitingReply {
            control: Rc::clone(self),
        }
    }

    /// Whether the watch found the client gone while a reply was awaited.
    pub fn hung_up(&self) -> bool {
        self.hung_up.get()
    }

    /// Ends an idle session's wait: its pending read sees end-of-file.
    pub fn interrupt_if_idle(&self) {
        if self.idle.get() {
            self.shut_read();
        }
    }

    fn shut_read(&self) {
        if let Some(fd) = self.fd.get() {
            // SAFETY: the fd belongs to a live session of this thread (it
            // removes itself from the table before its socket closes);
            // shutdown(2) only changes the socket's state.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
    }

    /// One look of the watch at this session.
    pub(crate) fn look(&self, now: Instant) {
        if let (Some((started, limit)), Some(fd)) = (self.writing.get(), self.fd.get()) {
            // A write that started long ago may have finished and left
            // the session waiting for its client's next command (a write
            // and a read submitted together), or may go on slowly: only a
            // socket still full means the client is not reading. One with
            // room starts the count again, so an idle session costs one
            // look at its socket per limit, not one per watch.
            if now.saturating_duration_since(started) >= limit && !self.write_timed_out.get() {
                if writable(fd) {
                    self.writing.set(Some((now, limit)));
                } else {
                    self.write_timed_out.set(true);
                    // SAFETY: as in `shut_read`. Shutting the write side
                    // fails the write that waits (EPIPE); the read side
                    // goes too, since the session is over.
                    unsafe {
                        libc::shutdown(fd, libc::SHUT_RDWR);
                    }
                }
            }
        }
        self.look_at_idle_or_busy(now);
    }

    /// The idle limit and the hang-up check of [`SessionControl::look`].
    fn look_at_idle_or_busy(&self, now: Instant) {
        let Some(since) = self.since.get() else {
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        if self.idle.get() {
            if let Some(limit) = self.idle_limit.get() {
                if elapsed >= limit && !self.timed_out.get() {
                    self.timed_out.set(true);
                    self.shut_read();
                }
            }
        } else if let (Some(reply_fd), Some(fd)) = (self.reply_fd.get(), self.fd.get()) {
            if !self.hung_up.get() && elapsed >= PEEK_AFTER && peer_state(fd) == PeerState::Gone {
                self.hung_up.set(true);
                // SAFETY: `reply_fd` is the session's open backend socket
                // (its guard clears it before the connection can close);
                // shutdown(2) only changes the socket's state.
                unsafe {
                    libc::shutdown(reply_fd, libc::SHUT_RD);
                }
            }
        }
    }
}

/// A session's wait for a reply, as the watch sees it; ends on drop.
pub struct AwaitingReply {
    control: Rc<SessionControl>,
}

impl Drop for AwaitingReply {
    fn drop(&mut self) {
        self.control.reply_fd.set(None);
    }
}

/// What a client socket shows without being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Open, nothing to read.
    Quiet,
    /// Bytes wait (the client pipelines its next command): it is there.
    Sent,
    /// End-of-file or an error: the client is gone.
    Gone,
}

/// Whether a write to the socket would not block (or fail at once): its
/// send buffer has room, or it is closed or in error.
fn writable(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a live session's open socket (see
    // `peer_state`), and a zero timeout: poll(2) only fills `revents`.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    n != 0 && poll.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0
}

/// Looks at the socket without consuming anything (`MSG_PEEK`).
fn peer_state(fd: RawFd) -> PeerState {
    let mut byte = 0u8;
    // SAFETY: `fd` is a live session's open client socket (sessions leave
    // the table before their sockets close), and the buffer is one valid
    // byte.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => PeerState::Gone,
        n if n > 0 => PeerState::Sent,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => PeerState::Quiet,
            _ => PeerState::Gone,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_idle_session_past_its_limit_has_its_read_side_shut() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let control = SessionControl::default();
        control.set_fd(ours.as_raw_fd());
        control.go_idle(Some(Duration::from_secs(2)));
        control.look(Instant::now() + Duration::from_secs(1));
        assert!(!control.timed_out());
        control.look(Instant::now() + Duration::from_secs(3));
        assert!(control.timed_out());
        // The shut read side reads as end-of-file.
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &ours, &mut buf).unwrap(), 0);
    }

    #[test]
    fn a_busy_session_is_told_only_when_its_client_is_gone() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (backend, server) = UnixStream::pair().unwrap();
        let control = Rc::new(SessionControl::default());
        control.set_fd(ours.as_raw_fd());
        control.go_busy();
        let later = Instant::now() + Duration::from_secs(1);
        let awaiting = control.await_reply(backend.as_raw_fd());
        control.look(later);
        assert!(!control.hung_up(), "the client is there");
        drop(theirs);
        control.look(later);
        assert!(control.hung_up(), "the client is gone");
        // The wait for the reply ends: the backend socket reads as
        // end-of-file although its server is still there.
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &backend, &mut buf).unwrap(), 0);
        drop(awaiting);
        assert_eq!(control.reply_fd.get(), None);
        drop(server);
    }

    #[test]
    fn a_session_not_awaiting_a_reply_is_left_alone() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let control = Rc::new(SessionControl::default());
        control.set_fd(ours.as_raw_fd());
        control.go_busy();
        drop(theirs);
        control.look(Instant::now() + Duration::from_secs(1));
        assert!(!control.hung_up());
    }

    #[test]
    fn a_write_to_a_full_socket_past_its_limit_has_the_socket_shut() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let control = SessionControl::default();
        control.set_fd(ours.as_raw_fd());
        control.go_busy();
        let start = Instant::now();
        control.write_started(Duration::from_secs(2));
        // Room in the socket: the write went through or goes on, nothing
        // is stuck; the count starts again.
        control.look(start + Duration::from_secs(3));
        assert!(!control.write_timed_out());
        // The peer reads nothing: the socket fills up.
        ours.set_nonblocking(true).unwrap();
        while std::io::Write::write(&mut &ours, &[0u8; 4096]).is_ok() {}
        control.look(start + Duration::from_secs(4));
        assert!(!control.write_timed_out(), "not past the limit again yet");
        control.look(start + Duration::from_secs(6));
        assert!(control.write_timed_out());
        // The shut write side refuses writes.
        let write = std::io::Write::write(&mut &ours, b"x");
        assert!(write.is_err(), "{write:?}");
        // A write that finished is never timed out.
        let (full, _peer) = UnixStream::pair().unwrap();
        full.set_nonblocking(true).unwrap();
        while std::io::Write::write(&mut &full, &[0u8; 4096]).is_ok() {}
        let control = SessionControl::default();
        control.set_fd(full.as_raw_fd());
        control.write_started(Duration::from_secs(2));
        control.write_done();
        control.look(Instant::now() + Duration::from_secs(3));
        assert!(!control.write_timed_out());
    }

    #[test]
    fn a_client_that_sent_more_is_there() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &theirs, b"x").unwrap();
        assert_eq!(peer_state(ours.as_raw_fd()), PeerState::Sent);
        drop(theirs);
        // Bytes still wait before the end-of-file: not yet gone.
        assert_eq!(peer_state(ours.as_raw_fd()), PeerState::Sent);
    }
}
