//! Unix socket files outlive the process that made them; binding again needs the
//! stale file gone, but never a live server's.
use std::io;
use std::path::Path;

/// Removes `path` if it is a socket nobody answers on; refuses (AddrInUse) when a
/// server still listens there.
pub fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        // A typo must not delete someone's file.
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
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
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "keep me").unwrap();
        assert_eq!(
            remove_stale_socket(&file).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(file.exists());
    }
}
