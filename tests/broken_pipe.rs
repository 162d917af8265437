//! A reader that stops early (`debug dump | head`) ends the command quietly:
//! exit 0 or death by SIGPIPE (141 in a shell), never a panic.
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::profile::Profile;
use tetragon_learner::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");

#[test]
fn output_commands_end_quietly_when_stdout_closes_early() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let store = Store::open(&db).unwrap();
    // Far more output than a pipe buffer (64 KiB) holds.
    let profiles: Vec<Profile> = (0..3_000)
        .map(|i| {
            Profile::new(
                LearnerKey::new("ns", "Deployment", &format!("workload-{i}"), "main"),
                1,
            )
        })
        .collect();
    store.write_durably(&profiles).unwrap();
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(200));
    for args in [
        vec!["debug", "dump", "--format", "json"],
        vec!["debug", "list"],
        vec!["export", "--format", "json"],
    ] {
        let mut child = Command::new(BIN)
            .args(&args)
            .arg("--db")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 16];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout); // `head` is done
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let quiet = out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE);
        assert!(quiet, "{args:?}: {} stderr: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
