//! The `floor` target's byte forwarder, `torpor-bench floor-proxy`, as
//! the suite runs it: the built binary in front of a real TCP server (an
//! echo server made here). Bytes must come back whole and in order, a
//! client's end must reach the backend, and a backend that refuses must
//! end the connection and not the process. No timing is asserted; the
//! waits are bounds that fail a hung test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_torpor-bench");

/// How long a hung step may take before the test fails.
const BOUND: Duration = Duration::from_secs(30);

/// An echo server on a free port; each connection's end (end of input
/// or an error) is reported on the channel once its socket is closed.
fn echo_server() -> (u16, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let port = listener.local_addr().expect("local address").port();
    let (ended, ends) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let ended = ended.clone();
            thread::spawn(move || {
                let mut buffer = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                drop(stream);
                let _ = ended.send(());
            });
        }
    });
    (port, ends)
}

/// The forwarder as a child process, killed when dropped.
struct Floor {
    child: Child,
    port: u16,
}

impl Floor {
    /// Starts `floor-proxy` in front of `backend` and waits for the line
    /// it prints once every worker listens.
    fn start(backend: u16) -> Floor {
        let port = torpor::scaler::process::free_port().expect("a free port");
        let mut child = Command::new(BIN)
            .args([
                "floor-proxy",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--backend",
                &format!("127.0.0.1:{backend}"),
                "--workers",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("torpor-bench floor-proxy starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the forwarder's first line");
        let floor = Floor { child, port };
        assert!(
            line.starts_with("floor-proxy listening on"),
            "the forwarder did not start: {line:?}"
        );
        floor
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the floor");
        stream.set_read_timeout(Some(BOUND)).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        stream
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes that tell their position apart, so a reordering shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

#[test]
fn bytes_come_back_whole_and_in_order_and_a_client_end_reaches_the_backend() {
    let (echo, ends) = echo_server();
    let floor = Floor::start(echo);
    let client = floor.connect();

    // Several messages, one far larger than the forwarder's 64 KiB buffer.
    let messages = [
        b"SELECT 1".to_vec(),
        pattern(1000, 1),
        pattern(300 * 1024, 2),
        pattern(3, 3),
        b"bye".to_vec(),
    ];
    // One at a time: each comes back whole before the next goes.
    let mut reader = client.try_clone().expect("clone the client");
    let writer = client;
    for (i, message) in messages.iter().enumerate() {
        // Written from a thread so the echo of a large message can flow
        // back while the rest is still being sent.
        let sent = message.clone();
        let mut sender = writer.try_clone().expect("clone the client");
        let sending = thread::spawn(move || sender.write_all(&sent));
        let mut back = vec![0u8; message.len()];
        reader
            .read_exact(&mut back)
            .unwrap_or_else(|e| panic!("message {i} did not come back whole: {e}"));
        assert!(back == *message, "message {i} came back changed");
        sending
            .join()
            .expect("sender thread")
            .expect("the message was sent");
    }

    // The client's end of input reaches the echo server, which closes;
    // that end comes back to the client as its end of input.
    writer
        .shutdown(Shutdown::Write)
        .expect("shut the write side");
    ends.recv_timeout(BOUND)
        .expect("the backend side saw the client's end");
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("the client sees the connection end");
    assert!(rest.is_empty(), "no bytes after the end: {rest:?}");

    // A client that simply closes ends its backend connection too.
    let mut second = floor.connect();
    second.write_all(b"ping").expect("send");
    let mut back = [0u8; 4];
    second.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"ping");
    drop(second);
    ends.recv_timeout(BOUND)
        .expect("the backend side saw the client close");
}

#[test]
fn a_backend_that_refuses_ends_the_connection_not_the_process() {
    // A port nobody listens on: taken and released at once.
    let refused = torpor::scaler::process::free_port().expect("a free port");
    let mut floor = Floor::start(refused);
    for _ in 0..3 {
        let mut client = floor.connect();
        let mut rest = Vec::new();
        // The connection ends (end of input or a reset) and never hangs.
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }
    assert!(
        floor.is_running(),
        "the forwarder survived refused backends"
    );
}
