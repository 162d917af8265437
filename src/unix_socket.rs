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

/// Binds a listening socket at `path` that only its owner can connect to, with
/// no window in which it is open to anyone else: `bind` creates the socket file
/// with the process umask, so it is bound inside a fresh owner-only (0700)
/// directory beside `path`, made 0600 there, and only then renamed into place.
/// The caller removes a stale socket first (`remove_stale_socket`).
pub fn bind_private(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // tempfile creates directories 0700. A short name keeps the temporary socket
    // path within the 108-byte limit whenever the final one is.
    let private = tempfile::Builder::new()
        .prefix(".s")
        .rand_bytes(6)
        .tempdir_in(parent)?;
    let staged = private.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staged, path)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_socket_is_owner_only_from_the_start_under_a_permissive_umask() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("admin.sock");
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0) };
        let listener = bind_private(&path);
        unsafe { libc::umask(old) };
        let _listener = listener.unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // The staging directory is gone; only the socket remains.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("admin.sock")]);
        std::os::unix::net::UnixStream::connect(&path).expect("connects at the final path");
    }

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
