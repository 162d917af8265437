//! Unix socket files outlive the process that made them; binding again needs the
//! stale file gone, but never a live server's.
use std::io;
use std::path::Path;

/// Removes `path` if it is a socket nobody answers on; refuses (AddrInUse) when a
/// server still listens there.
pub fn remove_stale_socket(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        ));
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_stale_sockets_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        remove_stale_socket(&path).unwrap();
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(
            remove_stale_socket(&path).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        drop(live);
        remove_stale_socket(&path).unwrap();
        assert!(!path.exists());
    }
}
