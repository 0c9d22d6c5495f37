//! The `floor` target's byte forwarder (`torpor-bench floor-proxy`): the
//! least any user-space proxy can do per query.
//!
//! It accepts TCP clients and, per client, opens a TCP connection to the
//! backend and copies bytes both ways without looking at them. What it
//! costs per query is the kernel's share of a proxy hop (copies, loopback
//! TCP, wake-ups, context switches) plus a read and a write per direction:
//! the floor under any proxy's CPU per query and latency.
//!
//! Shaped like Torpor's workers, so that the difference is the work and
//! not the runtime: one monoio runtime per worker thread (io_uring, or
//! epoll where io_uring is refused), each with its own `SO_REUSEPORT`
//! listener, nothing shared between workers.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::TypedValueParser;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use torpor::worker::uring_runtime;

/// One reusable buffer per direction of a connection: large enough that
/// a big result set moves in few reads.
const BUFFER_BYTES: usize = 64 * 1024;

/// Arguments of `torpor-bench floor-proxy`.
#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Where clients connect, `HOST:PORT`.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Where each client's bytes go, `HOST:PORT` (resolved once, at start).
    #[arg(long, value_name = "HOST:PORT")]
    pub backend: String,
    /// Worker threads, each with its own runtime and listener.
    #[arg(long, default_value_t = crate::procfs::cpus(),
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub workers: usize,
}

/// Which monoio driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// Runs the forwarder until the process is killed. Returns only when it
/// cannot start: the backend does not resolve, or a worker cannot build
/// its runtime or bind its listener. Once every worker listens it prints
/// `floor-proxy listening on ADDR …` on stdout, the sign that it serves.
pub fn run(args: FloorArgs) -> anyhow::Result<()> {
    let backend = args
        .backend
        .to_socket_addrs()
        .with_context(|| format!("--backend {}", args.backend))?
        .next()
        .with_context(|| format!("--backend {} resolves to no address", args.backend))?;
    let (ready, started) = mpsc::channel();
    let mut workers = Vec::with_capacity(args.workers);
    for index in 0..args.workers {
        let ready = ready.clone();
        let listen = args.listen;
        let worker = std::thread::Builder::new()
            .name(format!("floor-{index}"))
            .spawn(move || worker(listen, backend, ready))
            .context("starting a worker thread")?;
        workers.push(worker);
    }
    drop(ready);
    let mut drivers = Vec::with_capacity(args.workers);
    for _ in 0..args.workers {
        match started.recv() {
            Ok(Ok(driver)) => drivers.push(driver),
            Ok(Err(e)) => bail!("a worker could not start on {}: {e}", args.listen),
            Err(_) => bail!("a worker ended before it started"),
        }
    }
    let uring = drivers.iter().filter(|d| **d == Driver::IoUring).count();
    println!(
        "floor-proxy listening on {} → {backend} ({} workers, {uring} on io_uring)",
        args.listen, args.workers
    );
    for worker in workers {
        // A worker returns only if its runtime fails; the others carry on.
        let _ = worker.join();
    }
    bail!("every worker has stopped")
}

/// One worker: a runtime on this thread and a listener of its own, until
/// the process ends. Tells `ready` which driver it runs on, or why it
/// could not start.
fn worker(listen: SocketAddr, backend: SocketAddr, ready: mpsc::Sender<io::Result<Driver>>) {
    if monoio::utils::detect_uring() {
        // The ring as Torpor's workers set it up (the same function), else
        // a plain one: the floor differs from Torpor by the work alone.
        match uring_runtime(true).or_else(|_| uring_runtime(false)) {
            Ok(mut runtime) => {
                runtime.block_on(serve(listen, backend, Driver::IoUring, ready));
                return;
            }
            Err(e) => {
                // e.g. seccomp refuses io_uring_setup, or RLIMIT_MEMLOCK is
                // too low for the ring: epoll still works.
                eprintln!("floor-proxy: io_uring refused ({e}); using epoll");
            }
        }
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut runtime) => runtime.block_on(serve(listen, backend, Driver::Epoll, ready)),
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// Binds this worker's listener and accepts clients, each served by a
/// task of its own, for ever.
async fn serve(
    listen: SocketAddr,
    backend: SocketAddr,
    driver: Driver,
    ready: mpsc::Sender<io::Result<Driver>>,
) {
    // SO_REUSEPORT: every worker binds the same address and the kernel
    // spreads new connections over them; nothing is shared.
    let listener =
        match TcpListener::bind_with_config(listen, &ListenerOpts::new().reuse_port(true)) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
    let _ = ready.send(Ok(driver));
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                monoio::spawn(forward(client, backend));
            }
            Err(e) => {
                // Out of file descriptors, mostly: wait for connections to
                // close rather than spin.
                eprintln!(
                    "floor-proxy: accept failed on {listen} ({}): {e}",
                    driver.name()
                );
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One client: connects to the backend and copies bytes both ways, one
/// task per direction, until both directions have ended.
async fn forward(client: TcpStream, backend: SocketAddr) {
    let server = match TcpStream::connect_addr(backend).await {
        Ok(server) => server,
        Err(e) => {
            // Dropping the client closes it: it sees the connection end.
            eprintln!("floor-proxy: connecting to {backend}: {e}");
            return;
        }
    };
    // Queries are small and a reply must leave at once; Nagle would hold
    // a small write back waiting for the peer's ACK.
    if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
        return;
    }
    let (client_fd, server_fd) = (client.as_raw_fd(), server.as_raw_fd());
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = monoio::spawn(copy(client_read, server_write, client_fd, server_fd));
    copy(server_read, client_write, server_fd, client_fd).await;
    upstream.await;
}

/// Moves bytes from `from` to `to` until `from` ends or either fails.
///
/// End of input is passed on as such: `to`'s write side is shut, so its
/// peer sees end of input too and closes in turn, which ends the other
/// direction. An error shuts both sockets both ways, so the other
/// direction's pending read returns at once instead of waiting on a peer
/// that may never speak again. Each half keeps its socket open, so the
/// descriptors stay valid while this runs.
async fn copy<R, W>(mut from: R, mut to: W, from_fd: RawFd, to_fd: RawFd)
where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let mut buffer = Vec::with_capacity(BUFFER_BYTES);
    loop {
        // The read fills the buffer from its start; its length becomes
        // the bytes read, which is what write_all sends.
        let (read, returned) = from.read(buffer).await;
        buffer = returned;
        match read {
            Ok(0) => {
                shutdown(to_fd, libc::SHUT_WR);
                return;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let (written, returned) = to.write_all(buffer).await;
        buffer = returned;
        if written.is_err() {
            break;
        }
    }
    shutdown(from_fd, libc::SHUT_RDWR);
    shutdown(to_fd, libc::SHUT_RDWR);
}

/// `shutdown(2)` on a socket of a live connection. Its result is of no
/// use: a socket the peer already closed may say ENOTCONN, and the
/// connection ends either way.
fn shutdown(fd: RawFd, how: libc::c_int) {
    // SAFETY: the descriptor belongs to a connection whose halves the
    // caller holds, so it is open and ours; shutdown(2) changes only the
    // socket's state, never the descriptor's.
    unsafe {
        libc::shutdown(fd, how);
    }
}
