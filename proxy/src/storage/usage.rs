//! How full a filesystem is.

use std::path::Path;

/// A filesystem's use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Bytes in use (size less what is free, root's reserve included).
    pub used: u64,
    /// The filesystem's size.
    pub size: u64,
}

/// The use of the filesystem that holds `path`.
pub fn of(path: &Path) -> std::io::Result<Usage> {
    let stat = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let block = stat.f_frsize;
    let size = stat.f_blocks.saturating_mul(block);
    let free = stat.f_bfree.saturating_mul(block);
    Ok(Usage {
        used: size.saturating_sub(free),
        size,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_has_a_filesystem_with_some_use() {
        let dir = tempfile::tempdir().expect("dir");
        let usage = super::of(dir.path()).expect("statvfs");
        assert!(usage.size > 0 && usage.used <= usage.size, "{usage:?}");
    }
}
