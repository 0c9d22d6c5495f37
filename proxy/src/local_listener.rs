//! The Unix socket clients on the same host may connect to
//! (`listen_socket`, `--listen-socket`), as they do to MariaDB's own
//! socket: `mariadb -S /run/torpor/torpor.sock`, or a client library's
//! `socket` option. It skips the TCP stack on the client's hop.
//!
//! Unix sockets have no SO_REUSEPORT: the socket is bound once and every
//! worker accepts from its own duplicate of the descriptor (the kernel
//! hands each connection to one of them).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A bound client socket; the file is removed when this drops.
#[derive(Debug)]
pub struct LocalListener {
    listener: UnixListener,
    path: PathBuf,
}

impl LocalListener {
    /// Binds `path`. A file left there by a Torpor that died is replaced;
    /// one some process still accepts on is an error (`AddrInUse`), as is
    /// any other kind of file.
    pub fn bind(path: &Path) -> io::Result<LocalListener> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if is_socket(&meta) => {
                if UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process accepts connections on it",
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        // Anyone on the host may connect, as to MariaDB's own socket:
        // passwords, not file modes, decide who gets in.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
        listener.set_nonblocking(true)?;
        Ok(LocalListener {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// A duplicate of the listening descriptor, for one worker.
    pub fn for_worker(&self) -> io::Result<UnixListener> {
        self.listener.try_clone()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn is_socket(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_refused_and_the_file_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("torpor.sock");
        // A socket file nobody accepts on any more (a Torpor that died).
        drop(UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let listener = LocalListener::bind(&path).expect("a stale socket is replaced");
        let err = LocalListener::bind(&path).expect_err("in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        drop(listener);
        assert!(!path.exists(), "removed on drop");

        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").expect("write");
        assert!(LocalListener::bind(&file).is_err(), "a plain file stays");
        assert!(file.exists());
    }
}
