//! Live enforcement tests on a real Tetragon (issue "Enforce exactly what was
//! learned", item 8): the agent binary learns a small workload, its export is
//! loaded into Tetragon in enforce mode, and the same workload must still run
//! while a binary never run before is killed (raw tracepoint, host kernel) or
//! refused with EPERM (kprobe and LSM, in a VM). The agent follows its loaded
//! policy (issue "What the policies did"): every denial, and every exec a
//! monitor-mode policy would deny, is a violation of the learner (`debug
//! violations`), the policy's mode is in `debug policies`, and the operator's
//! `admin allow` / `admin ack` close the loop (host test).
//!
//! Both tests skip (one line `live test skipped: <reason>`, test passes) unless
//! the environment points at the harnesses: `TETRAGON_LEARNER_LIVE_TETRAGON`
//! (a directory with `tetragon-up`, `sandbox-up`, `load-confined`, ...) for the
//! host test, `TETRAGON_LEARNER_LIVE_VM` (a directory with `vm-run`) for the VM
//! test; they also skip when the harness answers 77 (this machine cannot run it).
//! `.ci/run` sets both when the harnesses sit next to the checkout.
//!
//! The oracle is written out here: expected paths and exit codes, never the
//! agent's own code. Every command has a timeout; a guard cleans up (agent,
//! policies, sandbox, Tetragon) even when an assertion fails, and keeps the work
//! directory (agent log, exported policies, `tp list`) for a failed run.
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");
const LIVE_TETRAGON: &str = "TETRAGON_LEARNER_LIVE_TETRAGON";
const LIVE_VM: &str = "TETRAGON_LEARNER_LIVE_VM";

/// The two tests share two cores: never run them at the same time (the VM's
/// TCG emulation would slow every timed step of the host test).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Says why the test does nothing, on the test's output and straight on the
/// process's stderr (not captured by the test harness: visible in CI logs).
fn skip(reason: &str) {
    use std::io::Write;
    println!("live test skipped: {reason}");
    let _ = writeln!(std::io::stderr().lock(), "live test skipped: {reason}");
}

/// The harness directory named by `var`, or why the test skips.
fn harness(var: &str, tool: &str) -> Result<PathBuf, String> {
    let dir = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{var} is not set (point it at the harness directory)"))?;
    let dir = PathBuf::from(dir);
    if !dir.join(tool).is_file() {
        return Err(format!("{var}={} has no {tool}", dir.display()));
    }
    Ok(dir)
}

/// A fresh directory under /tmp (the sandbox is a private mount namespace of
/// the host: /tmp is the same file system there).
fn work_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let dir = PathBuf::from(format!(
        "/tmp/tetragon-learner-live-{tag}.{}.{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).expect("create work dir");
    dir
}

/// What a finished command did; `code` is the shell's number: the exit code,
/// or 128 + the signal that ended it (137 = SIGKILL).
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    what: String,
}

impl Out {
    fn show(&self) -> String {
        format!(
            "`{}` exit {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.what,
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn shell_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs `cmd` with stdin closed and stdout/stderr in files of `dir` (a
/// background process that inherits them cannot block the test), killing it
/// after `timeout` (then code 124, like coreutils `timeout`).
fn run(dir: &Path, cmd: &mut Command, timeout: Duration) -> Out {
    let what = describe(cmd);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (o, e) = (
        dir.join(format!("cmd{n}.out")),
        dir.join(format!("cmd{n}.err")),
    );
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&o).expect("stdout file"))
        .stderr(fs::File::create(&e).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start `{what}`: {err}"));
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break shell_code(status);
        }
        if start.elapsed() > timeout {
            // SIGTERM first (vm-run and the harness scripts clean up on it).
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let grace = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && grace.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            break 124;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let out = Out {
        code,
        stdout: read(&o),
        stderr: read(&e),
        what,
    };
    let _ = (fs::remove_file(&o), fs::remove_file(&e));
    out
}

/// `NAME=value` lines (as printed by tetragon-up and sandbox-up).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim().trim_matches('\'').trim_matches('"').to_string(),
            )
        })
        .collect()
}

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn copy_exec(from: &str, to: &Path) {
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {from} to {}: {e}", to.display()));
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).expect("chmod");
}

trait DieWithParent {
    /// The child gets `signal` if the test process dies without running the
    /// guard (a test runner killed on timeout, say).
    fn die_with_parent(&mut self, signal: libc::c_int) -> &mut Self;
}

impl DieWithParent for Command {
    fn die_with_parent(&mut self, signal: libc::c_int) -> &mut Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            self.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

/// Everything the host test started, undone in reverse order on drop, even
/// when an assertion fails: the agent, loaded policies, the background
/// process, the sandbox, Tetragon. The work directory is kept when the test
/// fails (its path is printed).
struct Live {
    harness: PathBuf,
    env: BTreeMap<String, String>,
    work: PathBuf,
    agent: Option<Child>,
    background: Vec<Child>,
    policies: Vec<String>,
    sandbox_pid: Option<String>,
    tetragon_dir: Option<String>,
}

impl Live {
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.harness.join(name));
        c.envs(&self.env);
        c
    }

    fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("the harness did not print {name}; env: {:?}", self.env))
    }

    fn tetra(&self, args: &[&str]) -> Out {
        let mut c = Command::new(self.var("TETRA"));
        c.args(["--server-address", self.var("TETRAGON_ADDRESS")])
            .args(args);
        run(&self.work, &mut c, Duration::from_secs(30))
    }

    fn agent_cmd(&self, args: &[&str]) -> Out {
        let mut c = Command::new(BIN);
        c.args(args);
        run(&self.work, &mut c, Duration::from_secs(30))
    }

    fn admin_socket(&self) -> String {
        self.work.join("admin.sock").display().to_string()
    }

    /// `nsenter -t SANDBOX_PID -m -- argv...`: the exec of `argv[0]` happens in
    /// the sandbox's mount namespace, where the confined policy applies.
    fn in_sandbox(&self, argv: &[&str]) -> Out {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            self.sandbox_pid.as_deref().expect("sandbox is up"),
            "-m",
            "--",
        ])
        .args(argv);
        run(&self.work, &mut c, Duration::from_secs(20))
    }

    /// The agent's durable profiles, `export --format json`.
    fn profiles(&self) -> Result<Json, String> {
        let out = self.agent_cmd(&[
            "export",
            "--admin-socket",
            &self.admin_socket(),
            "--format",
            "json",
        ]);
        if out.code != 0 {
            return Err(out.show());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON ({e}): {}", out.show()))
    }

    /// `debug ARGS... --admin-socket S --format json`, parsed.
    fn debug_json(&self, args: &[&str]) -> Result<Json, String> {
        let sock = self.admin_socket();
        let mut argv = vec!["debug"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--admin-socket", &sock, "--format", "json"]);
        let out = self.agent_cmd(&argv);
        if out.code != 0 {
            return Err(out.show());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON ({e}): {}", out.show()))
    }

    /// `admin ARGS... --admin-socket S`.
    fn admin(&self, args: &[&str]) -> Out {
        let sock = self.admin_socket();
        let mut argv = vec!["admin", "--admin-socket", &sock];
        argv.extend_from_slice(args);
        self.agent_cmd(&argv)
    }

    fn tp_list(&self) -> Json {
        let out = self.tetra(&["tp", "list", "-o", "json"]);
        assert_eq!(out.code, 0, "tetra tp list failed: {}", out.show());
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("tp list: {e}: {}", out.show()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let t = Duration::from_secs(30);
        if let Some(mut agent) = self.agent.take() {
            // SIGTERM (a clean drain) first, SIGKILL if it lingers.
            if let Ok(pid) = libc::pid_t::try_from(agent.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let start = Instant::now();
            while matches!(agent.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
        for name in std::mem::take(&mut self.policies) {
            let out = run(&self.work, self.tool("unload").arg(&name), t);
            if out.code != 0 {
                eprintln!("live test cleanup: {}", out.show());
            }
        }
        if let Some(pid) = self.sandbox_pid.take() {
            let out = run(&self.work, self.tool("sandbox-down").arg(&pid), t);
            if out.code != 0 {
                eprintln!("live test cleanup: {}", out.show());
            }
        }
        for mut child in self.background.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.tetragon_dir.take() {
            let out = run(&self.work, self.tool("tetragon-down").arg(&dir), t);
            if out.code != 0 {
                eprintln!("live test cleanup: {}", out.show());
            }
            if std::thread::panicking() {
                eprintln!("live test: Tetragon's logs kept in {dir}");
            } else {
                let _ = fs::remove_dir_all(&dir);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "live test: work directory kept: {} (agent.log, policy files)",
                self.work.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

/// The Host learner's profile in `export --format json` output.
fn host_profile(profiles: &Json) -> Option<&Json> {
    profiles
        .as_array()?
        .iter()
        .find(|p| p["key"]["workload_kind"] == "Host")
}

fn executable_paths(profile: &Json) -> Vec<String> {
    profile["executables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["path"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every string value anywhere in a YAML document (the allow-list's paths
/// among them), for diagnostics.
fn yaml_strings(v: &Yaml, out: &mut Vec<String>) {
    match v {
        Yaml::String(s) => out.push(s.clone()),
        Yaml::Sequence(s) => s.iter().for_each(|v| yaml_strings(v, out)),
        Yaml::Mapping(m) => m.values().for_each(|v| yaml_strings(v, out)),
        Yaml::Tagged(t) => yaml_strings(&t.value, out),
        _ => {}
    }
}

/// The host learner's object in a multi-document `export --format
/// tracingpolicy` output: a cluster-wide `TracingPolicy` named
/// `tetragon-learner-host-<node>`.
fn host_policies(yaml: &str) -> Result<Vec<Yaml>, String> {
    let mut found = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = <Yaml as serde::Deserialize>::deserialize(doc).map_err(|e| e.to_string())?;
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        if v["kind"] == "TracingPolicy" && name.starts_with("tetragon-learner-host-") {
            found.push(v);
        }
    }
    Ok(found)
}

fn policy_state<'a>(list: &'a Json, name: &str) -> Option<&'a Json> {
    list["policies"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// The Host learner's key (`NAMESPACE/KIND/WORKLOAD/CONTAINER`, the `id`) in
/// `debug list --format json` output.
fn host_key(list: &Json) -> Option<String> {
    list.as_array()?
        .iter()
        .find(|l| l["key"]["workload_kind"] == "Host")?["id"]
        .as_str()
        .map(str::to_string)
}

/// The violations in `debug violations [KEY] --format json` output (one
/// `{key, active, evicted, violations}` per learner) of the Host learner
/// whose `path` and `mode` are these.
fn host_violations<'a>(v: &'a Json, path: &str, mode: &str) -> Vec<&'a Json> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["key"]["workload_kind"] == "Host")
        .flat_map(|l| l["violations"].as_array().into_iter().flatten())
        .filter(|x| x["path"] == path && x["mode"] == mode)
        .collect()
}

/// The agent's view of one of its policies in `debug policies --format json`.
fn agent_policy<'a>(v: &'a Json, name: &str) -> Option<&'a Json> {
    v["policies"].as_array()?.iter().find(|p| p["name"] == name)
}

/// The agent's log lines about policies and violations (and warnings), the
/// last 40, for a failure report.
fn agent_log_excerpt(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "violation",
                "polic",
                "warn",
                "error",
                "reconnect",
                "subscri",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A 127.0.0.1 port free a moment ago (for the agent's `--metrics-address`).
fn free_local_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").to_string()
}

/// `GET path` on `addr` (HTTP/1.0, 5 s timeouts), the body parsed as JSON,
/// whatever the status (`/readyz` answers 503 with a body too).
fn http_get_json(addr: &str, path: &str) -> Option<Json> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Polls `what` until it answers `Some`, for up to `timeout`.
fn poll<T>(timeout: Duration, mut what: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = what() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Timer(Instant, Vec<(String, Duration)>);

impl Timer {
    fn lap(&mut self, what: &str) {
        let now = Instant::now();
        self.1.push((what.to_string(), now - self.0));
        println!("live: {what}: {:.1}s", (now - self.0).as_secs_f64());
        self.0 = now;
    }
}

/// Host kernel, raw tracepoint `sched/sched_process_exec` + `Sigkill`, the
/// policy confined to a sandbox mount namespace by `load-confined`.
#[test]
fn host_raw_tracepoint_enforces_exactly_what_was_learned() {
    let Ok(harness) = harness(LIVE_TETRAGON, "tetragon-up") else {
        return skip(&harness(LIVE_TETRAGON, "tetragon-up").unwrap_err());
    };
    let _serial = serial();
    let mut timer = Timer(Instant::now(), Vec::new());
    let work = fs::canonicalize(work_dir("host")).expect("canonical work dir");
    let mut live = Live {
        harness,
        env: BTreeMap::new(),
        work: work.clone(),
        agent: None,
        background: Vec::new(),
        policies: Vec::new(),
        sandbox_pid: None,
        tetragon_dir: None,
    };

    // 1. Tetragon and the sandbox.
    let up = run(
        &work,
        live.tool("tetragon-up")
            .args([
                "--max-seconds",
                "900",
                "--lock-wait",
                "240",
                "--ready-timeout",
                "90",
            ])
            .args(["--dir", &work.join("tetragon").display().to_string()]),
        Duration::from_secs(420),
    );
    if up.code == 77 {
        return skip(up.stderr.trim());
    }
    assert_eq!(up.code, 0, "tetragon-up failed: {}", up.show());
    live.env.extend(parse_env(&up.stdout));
    live.tetragon_dir = Some(live.var("TETRAGON_DIR").to_string());
    let sb = run(
        &work,
        live.tool("sandbox-up").args(["--max-seconds", "900"]),
        Duration::from_secs(30),
    );
    if sb.code == 77 {
        return skip(sb.stderr.trim());
    }
    assert_eq!(sb.code, 0, "sandbox-up failed: {}", sb.show());
    let sbenv = parse_env(&sb.stdout);
    live.sandbox_pid = Some(sbenv["SANDBOX_PID"].clone());
    let inode = sbenv["SANDBOX_MNT_INODE"].clone();
    timer.lap("tetragon-up + sandbox-up");

    // 2. The workload directory.
    let wl = work.join("wl");
    for d in ["bin", "farm", "new"] {
        fs::create_dir_all(wl.join(d)).expect("mkdir");
    }
    let w = |rel: &str| wl.join(rel).display().to_string();
    symlink("/usr/bin/true", wl.join("bin/true-link")).expect("symlink");
    // A busybox-style farm: several names, one multi-call binary (env).
    copy_exec("/usr/bin/env", &wl.join("multi"));
    symlink("../multi", wl.join("farm/a")).expect("symlink");
    symlink("../multi", wl.join("farm/b")).expect("symlink");
    write_exec(&wl.join("x.sh"), "#!/bin/sh\nexit 0\n");
    // Run only before the agent starts (so learned from the snapshot), and again under enforcement.
    copy_exec("/usr/bin/sleep", &wl.join("pre-sleep"));
    // Never run until the policy is enforced.
    copy_exec("/usr/bin/true", &wl.join("new/never-run"));
    copy_exec("/usr/bin/true", &wl.join("new/never-run-2"));
    copy_exec("/usr/bin/true", &wl.join("new/never-run-3"));
    let pre = Command::new("nsenter")
        .args(["-t", live.sandbox_pid.as_deref().unwrap(), "-m", "--"])
        .args([&w("pre-sleep"), "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the pre-started process");
    live.background.push(pre);
    std::thread::sleep(Duration::from_millis(500));

    // 3. The agent. Backfill off: what ran before the agent is learned only from
    // the process snapshot, and nothing is allowed because some other host
    // process happened to run it before (dash, say) rather than through the
    // workload's own execs.
    let metrics = free_local_address();
    let agent_log = fs::File::create(work.join("agent.log")).expect("agent log");
    let agent = Command::new(BIN)
        .args(["run", "--tetragon-address", live.var("TETRAGON_ADDRESS")])
        .args(["--db", &work.join("db").display().to_string()])
        .args(["--admin-socket", &live.admin_socket()])
        .args(["--learn-host-processes", "--backfill", "off"])
        .args(["--metrics-address", &metrics])
        .args(["--export-log", live.var("TETRAGON_EXPORT_LOG")])
        .die_with_parent(libc::SIGKILL)
        .stdin(Stdio::null())
        .stdout(agent_log.try_clone().expect("dup"))
        .stderr(agent_log)
        .spawn()
        .expect("start the agent");
    live.agent = Some(agent);
    let status = poll(Duration::from_secs(30), || {
        let out = live.agent_cmd(&["admin", "--admin-socket", &live.admin_socket(), "status"]);
        let v: Json = serde_json::from_str(&out.stdout).ok()?;
        (v["connection"]["ready"] == true && v["snapshot"]["taken"].as_u64() >= Some(1))
            .then_some(v)
    });
    assert!(
        status.is_some(),
        "the agent was not ready (admin status: connection.ready and one snapshot taken) within 30 s; \
         agent log: {}",
        work.join("agent.log").display()
    );
    // The agent's own observe-only policies (hook views): wait until `/readyz`
    // reports no view `pending` (each `active`, or `unavailable`: this kernel
    // has no kprobes and no BPF LSM, so the `opened` view cannot load here).
    let mut readyz = Json::Null;
    let settled = poll(Duration::from_secs(60), || {
        readyz = http_get_json(&metrics, "/readyz")?;
        let views = readyz["hook_views"].as_object()?;
        (!views.is_empty() && views.values().all(|v| v["status"] != "pending")).then_some(())
    });
    assert!(
        settled.is_some(),
        "the agent's hook views did not settle (no view pending in /readyz hook_views) within \
         60 s: /readyz {readyz}; tp list {}",
        live.tp_list()
    );
    println!("live: /readyz hook_views: {}", readyz["hook_views"]);
    let mut problems = Vec::new();
    // The raw tracepoint loads on this kernel: the export's resolved paths need it.
    if readyz["hook_views"]["loaded"]["status"] != "active" {
        problems.push(format!(
            "the agent's `loaded` hook view (raw sched_process_exec) must be active here: {}",
            readyz["hook_views"]["loaded"]
        ));
    }
    let list = live.tp_list();
    println!(
        "live: policies in Tetragon: {:?}",
        list["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", p["name"], p["state"]))
            .collect::<Vec<_>>()
    );
    timer.lap("agent ready (admin status, /readyz hook views settled)");

    // 4. The workload, learned. (label, argv): every exec exits 0.
    let x_sh = w("x.sh");
    let cd_x = format!("cd {} && ./x.sh", wl.display());
    let workload: Vec<(&str, Vec<String>)> = vec![
        (
            "symlink bin/true-link -> /usr/bin/true",
            vec![w("bin/true-link")],
        ),
        (
            "/bin/sh -c (/bin -> usr/bin, sh -> dash)",
            vec!["/bin/sh".into(), "-c".into(), "exit 0".into()],
        ),
        // env without a command: prints the environment, runs nothing else
        // (so /usr/bin/true is reached only through bin/true-link).
        ("farm/a -> ../multi (env)", vec![w("farm/a")]),
        ("farm/b -> ../multi (env)", vec![w("farm/b"), "-i".into()]),
        ("#!/bin/sh script by absolute path", vec![x_sh.clone()]),
        (
            "#!/bin/sh script by relative path (cd && ./x.sh)",
            vec!["/bin/sh".into(), "-c".into(), cd_x],
        ),
        (
            "pre-sleep (run before the agent started) again",
            vec![w("pre-sleep"), "0".into()],
        ),
    ];
    let run_workload = |live: &Live, phase: &str| -> Vec<String> {
        let mut bad = Vec::new();
        for (label, argv) in &workload {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = live.in_sandbox(&argv);
            println!("live: {phase}: {label}: exit {}", out.code);
            if out.code != 0 {
                bad.push(format!(
                    "{phase}: {label}: expected exit 0, got {}: {}",
                    out.code,
                    out.show()
                ));
            }
        }
        bad
    };
    let bad = run_workload(&live, "learning");
    assert!(
        bad.is_empty(),
        "the workload failed before any policy was loaded:\n{}",
        bad.join("\n")
    );
    // process_exec `binary` of each exec (the execve path made absolute; links not resolved).
    let expected_binaries = [
        w("bin/true-link"),
        "/bin/sh".to_string(),
        w("farm/a"),
        w("farm/b"),
        x_sh.clone(),
        w("pre-sleep"),
    ];
    let mut missing = Vec::new();
    let learned = poll(Duration::from_secs(20), || {
        let profiles = live.profiles().ok()?;
        let paths = executable_paths(host_profile(&profiles)?);
        missing = expected_binaries
            .iter()
            .filter(|b| !paths.contains(b))
            .cloned()
            .collect();
        missing.is_empty().then_some(paths)
    });
    assert!(
        learned.is_some(),
        "the Host learner did not learn {missing:?} within 20 s (export --format json)"
    );
    timer.lap("workload run and learned");

    // 5. Export the allow-list, enforce it in the sandbox.
    // The paths the raw tracepoint's linux_binprm argument compares: links
    // resolved, a #! script's interpreter.
    let expected_allowed = [
        "/usr/bin/true".to_string(),
        "/usr/bin/dash".to_string(),
        w("multi"),
        w("pre-sleep"),
    ];
    let never = w("new/never-run");
    // The hook views come from the agent's observe policies' events: give the
    // export a few seconds to carry them all before loading it.
    let mut last_export = None;
    let mut complete = false;
    poll(Duration::from_secs(10), || {
        let out = live.agent_cmd(&[
            "export",
            "--admin-socket",
            &live.admin_socket(),
            "--format",
            "tracingpolicy",
            "--hook",
            "tracepoint",
            "--mode",
            "enforce",
        ]);
        let policies = host_policies(&out.stdout).ok();
        let done = out.code == 0
            && policies.as_ref().is_some_and(|ps| {
                ps.len() == 1 && {
                    let mut s = Vec::new();
                    yaml_strings(&ps[0], &mut s);
                    expected_allowed.iter().all(|p| s.contains(p))
                }
            });
        // A refusal (usage error, no host object) will not change: stop polling.
        let final_answer = done || out.code != 0;
        complete = done;
        last_export = Some((out, policies));
        final_answer.then_some(())
    });
    let (out, policies) = last_export.expect("export ran");
    fs::write(work.join("export.yaml"), &out.stdout).expect("save export");
    let policies =
        policies.unwrap_or_else(|| panic!("export printed invalid YAML: {}", out.show()));
    assert!(
        out.code == 0 && policies.len() == 1,
        "`export --format tracingpolicy --hook tracepoint --mode enforce` must print exactly one \
         TracingPolicy named tetragon-learner-host-<node> for the Host learner; found {}: {}",
        policies.len(),
        out.show()
    );
    let policy = &policies[0];
    let mut strings = Vec::new();
    yaml_strings(policy, &mut strings);
    let missing_allowed: Vec<&String> = expected_allowed
        .iter()
        .filter(|p| !strings.contains(p))
        .collect();
    if !complete {
        println!(
            "live: the exported policy lacks {missing_allowed:?} (the workload's resolved paths)"
        );
    }
    let policy_text = serde_yaml::to_string(policy).expect("policy YAML");
    println!("live: exported host policy:\n{policy_text}");
    if strings.contains(&never) {
        problems.push(format!(
            "the exported policy allows {never}, which never ran"
        ));
    }
    let policy_file = work.join("host-policy.yaml");
    fs::write(&policy_file, &policy_text).expect("write policy");
    let loaded = run(
        &work,
        live.tool("load-confined").arg(&policy_file).arg(&inode),
        Duration::from_secs(90),
    );
    if loaded.code == 77 {
        // PyYAML missing: load-confined cannot run on this machine.
        return skip(loaded.stderr.trim());
    }
    assert_eq!(
        loaded.code,
        0,
        "load-confined refused the exported policy (saved in {}): {}",
        policy_file.display(),
        loaded.show()
    );
    let name = loaded.stdout.trim().to_string();
    live.policies.push(name.clone());
    let list = live.tp_list();
    fs::write(work.join("tp-list-enforce.json"), list.to_string()).expect("save tp list");
    let state = policy_state(&list, &name);
    assert!(
        state.is_some_and(|p| p["state"] == "TP_STATE_ENABLED" && p["mode"] == "TP_MODE_ENFORCE"),
        "tp list must show {name} TP_STATE_ENABLED in TP_MODE_ENFORCE: {list}"
    );
    timer.lap("export + load-confined (enforce)");
    // The agent follows its own loaded policies' events (and so recognises
    // their kills) once its periodic look at Tetragon's list (every
    // --policy-refresh, 5 s) found this one; it logs the change. A kill
    // before that is learned like any exec: the gap is reported, not hidden.
    let agent_log = work.join("agent.log");
    let followed = poll(Duration::from_secs(75), || {
        let log = fs::read_to_string(&agent_log).ok()?;
        log.lines()
            .any(|l| l.contains("following their events") && l.contains(&name))
            .then_some(())
    });
    if followed.is_none() {
        problems.push(format!(
            "the agent did not log that it follows {name}'s events (\"... following their \
             events\") within 75 s of the policy being loaded"
        ));
    }
    // Its stream re-subscribes after that line: give it a moment.
    std::thread::sleep(Duration::from_secs(2));
    timer.lap("the agent follows the loaded policy");

    // 6. The same workload runs; a binary never run is killed, and not learned.
    let bad = run_workload(&live, "enforce");
    if !bad.is_empty() {
        problems.push(format!(
            "under the exported policy, {} of the workload's execs failed (the allow-list lacks {:?}):\n{}",
            bad.len(),
            missing_allowed,
            bad.join("\n")
        ));
    }
    let killed = live.in_sandbox(&[&never]);
    println!(
        "live: enforce: never-run binary {never}: exit {}",
        killed.code
    );
    if killed.code != 137 {
        problems.push(format!(
            "enforce: {never} must be killed (137), got {}",
            killed.code
        ));
    }
    let killed_at = Instant::now();
    // The Host learner's key, as `debug list` shows it (admin allow/ack take it).
    let list_out = live.debug_json(&["list"]);
    let hostkey = list_out
        .as_ref()
        .ok()
        .and_then(host_key)
        .unwrap_or_else(|| {
            panic!("`debug list --format json` shows no Host learner: {list_out:?}")
        });
    println!("live: host learner key: {hostkey}");
    // The kill is a violation of the Host learner: `denied` (the exit says
    // SIGKILL), the path the raw tracepoint checked, the loaded policy's name.
    let agent_log = work.join("agent.log");
    let mut last_violations = Json::Null;
    let mut wait_violation = |live: &Live, path: &str, mode: &str, within: Duration| {
        let start = Instant::now();
        let found = poll(within, || {
            last_violations = live.debug_json(&["violations", &hostkey]).ok()?;
            host_violations(&last_violations, path, mode)
                .first()
                .map(|v| (*v).clone())
        });
        if let Some(v) = &found {
            println!(
                "live: violation {mode} {path} after {:.1}s: {v}",
                start.elapsed().as_secs_f64()
            );
        }
        (found, last_violations.clone())
    };
    let violation_problem =
        |what: &str, path: &str, mode: &str, seen: &Json, live: &Live| -> String {
            format!(
                "AGENT: {what}: `debug violations {hostkey} --format json` shows no `{mode}` \
                 violation with path {path} (policy {name}); last answer: {seen}\n  tp list: {}\n  \
                 debug policies: {:?}\n  agent log (policies, violations):\n{}",
                live.tp_list(),
                live.debug_json(&["policies"]),
                agent_log_excerpt(&agent_log)
            )
        };
    let check_violation = |v: &Json, what: &str, problems: &mut Vec<String>| {
        if v["policy"] != name.as_str() {
            problems.push(format!(
                "AGENT: {what}: the violation's policy must be {name}: {v}"
            ));
        }
        if v["acknowledged"] != false || v["count"].as_u64().unwrap_or(0) < 1 {
            problems.push(format!(
                "AGENT: {what}: a new violation is not acknowledged and counted at least once: {v}"
            ));
        }
    };
    match wait_violation(&live, &never, "denied", Duration::from_secs(8)) {
        (Some(v), _) => check_violation(&v, "enforce kill", &mut problems),
        (None, seen) => problems.push(violation_problem(
            &format!("enforce: {never} killed (exit {})", killed.code),
            &never,
            "denied",
            &seen,
            &live,
        )),
    }
    if let Some(left) = Duration::from_secs(3).checked_sub(killed_at.elapsed()) {
        std::thread::sleep(left);
    }
    match live.profiles() {
        Ok(p) => {
            let paths = host_profile(&p).map(executable_paths).unwrap_or_default();
            // The agent recognises its own policy's kill (the exit's SIGKILL
            // after the policy's event) and takes the exec it brought out again.
            if paths.contains(&never) {
                problems.push(format!(
                    "AGENT: {never} is in the Host profile's executables 3 s after its own \
                     enforced policy killed it: {paths:?}"
                ));
            }
        }
        Err(e) => problems.push(format!("export --format json after the kill: {e}")),
    }
    timer.lap("workload under enforce + never-run binary");

    // 7. Monitor mode: the never-run binary runs.
    let set = live.tetra(&["tp", "set-mode", &name, "monitor"]);
    let set_at = Instant::now();
    assert_eq!(set.code, 0, "tp set-mode monitor: {}", set.show());
    let list = live.tp_list();
    fs::write(work.join("tp-list-monitor.json"), list.to_string()).expect("save tp list");
    if !policy_state(&list, &name).is_some_and(|p| p["mode"] == "TP_MODE_MONITOR") {
        problems.push(format!(
            "tp list must show {name} in TP_MODE_MONITOR: {list}"
        ));
    }
    let ran = live.in_sandbox(&[&never]);
    println!("live: monitor: never-run binary {never}: exit {}", ran.code);
    if ran.code != 0 {
        problems.push(format!(
            "monitor: {never} must run (exit 0), got {}",
            ran.code
        ));
    }
    // A second binary first run under the monitor-mode policy: it ran, so it
    // is learned (Tetragon still reports KPROBE_ACTION_SIGKILL in monitor mode;
    // only the policy's mode, as `tp list` shows it, says nothing was killed).
    let never2 = w("new/never-run-2");
    let ran = live.in_sandbox(&[&never2]);
    println!(
        "live: monitor: never-run binary {never2}: exit {}",
        ran.code
    );
    if ran.code != 0 {
        problems.push(format!(
            "monitor: {never2} must run (exit 0), got {}",
            ran.code
        ));
    }
    let mut learned_never2 = false;
    poll(Duration::from_secs(5), || {
        let p = live.profiles().ok()?;
        learned_never2 = executable_paths(host_profile(&p)?).contains(&never2);
        learned_never2.then_some(())
    });
    if !learned_never2 {
        problems.push(format!(
            "monitor: {never2} ran under the monitor-mode policy (exit 0) but the agent did not \
             learn it within 5 s of the run (its view of the policy's mode may still say enforce)"
        ));
    }
    // Both ran under the monitor-mode policy: `would-deny` violations, told
    // by what followed the event (a clean exit), not by the policy list.
    let mut would_deny_id = None;
    for path in [&never, &never2] {
        match wait_violation(&live, path, "would-deny", Duration::from_secs(8)) {
            (Some(v), _) => {
                check_violation(&v, "monitor run", &mut problems);
                if path == &never2 {
                    would_deny_id = v["id"].as_str().map(str::to_string);
                }
            }
            (None, seen) => problems.push(violation_problem(
                &format!("monitor: {path} ran (exit 0)"),
                path,
                "would-deny",
                &seen,
                &live,
            )),
        }
    }
    // The agent's view of the mode follows within one --policy-refresh (5 s).
    let agent_mode = |live: &Live, want: &str, since: Instant, problems: &mut Vec<String>| {
        let mut seen = Json::Null;
        let found = poll(
            Duration::from_secs(7).saturating_sub(since.elapsed()),
            || {
                seen = live.debug_json(&["policies"]).ok()?;
                let p = agent_policy(&seen, &name)?;
                (p["mode"] == want && p["state"] == "enabled").then_some(())
            },
        );
        match found {
            Some(()) => println!(
                "live: debug policies: {name} {want} {:.1}s after tp set-mode",
                since.elapsed().as_secs_f64()
            ),
            None => problems.push(format!(
                "AGENT: `debug policies --format json` must show {name} enabled in mode {want} \
                 within 7 s of `tp set-mode {name} {want}` (one --policy-refresh, 5 s); last \
                 answer: {seen}\n  tp list: {}",
                live.tp_list()
            )),
        }
    };
    agent_mode(&live, "monitor", set_at, &mut problems);
    timer.lap("monitor mode");

    // 8. Enforce again: a third binary never run is killed, recorded `denied`,
    // not learned.
    let set = live.tetra(&["tp", "set-mode", &name, "enforce"]);
    let set_at = Instant::now();
    assert_eq!(set.code, 0, "tp set-mode enforce: {}", set.show());
    fs::write(
        work.join("tp-list-enforce-2.json"),
        live.tp_list().to_string(),
    )
    .expect("save tp list");
    agent_mode(&live, "enforce", set_at, &mut problems);
    let never3 = w("new/never-run-3");
    let killed = live.in_sandbox(&[&never3]);
    println!(
        "live: enforce again: never-run binary {never3}: exit {}",
        killed.code
    );
    if killed.code != 137 {
        problems.push(format!(
            "enforce again: {never3} must be killed (137), got {}",
            killed.code
        ));
    }
    let killed_at = Instant::now();
    match wait_violation(&live, &never3, "denied", Duration::from_secs(8)) {
        (Some(v), _) => check_violation(&v, "enforce again", &mut problems),
        (None, seen) => problems.push(violation_problem(
            &format!("enforce again: {never3} killed (exit {})", killed.code),
            &never3,
            "denied",
            &seen,
            &live,
        )),
    }
    if let Some(left) = Duration::from_secs(3).checked_sub(killed_at.elapsed()) {
        std::thread::sleep(left);
    }
    match live.profiles() {
        Ok(p) => {
            let paths = host_profile(&p).map(executable_paths).unwrap_or_default();
            if paths.contains(&never3) {
                problems.push(format!(
                    "AGENT: {never3} is in the Host profile's executables 3 s after its own \
                     enforced policy killed it: {paths:?}"
                ));
            }
        }
        Err(e) => problems.push(format!("export --format json after the second kill: {e}")),
    }
    timer.lap("enforce again: killed and recorded denied");

    // 9. The operator allows it (the violation's path), re-exports, replaces
    // the loaded policy: it runs; the monitor-mode violation is acknowledged.
    let allow = live.admin(&["allow", &hostkey, &never3]);
    if allow.code != 0 {
        problems.push(format!("AGENT: admin allow failed: {}", allow.show()));
    }
    match live.debug_json(&["violations", &hostkey]) {
        Ok(v) => {
            let left: Vec<&Json> = ["denied", "would-deny"]
                .iter()
                .flat_map(|m| host_violations(&v, &never3, m))
                .collect();
            if !left.is_empty() {
                problems.push(format!(
                    "AGENT: `admin allow {hostkey} {never3}` must clear its violations; still \
                     listed: {left:?}"
                ));
            }
        }
        Err(e) => problems.push(format!("debug violations after allow: {e}")),
    }
    match live.profiles() {
        Ok(p) => {
            let exe = host_profile(&p).and_then(|h| {
                h["executables"]
                    .as_array()?
                    .iter()
                    .find(|e| e["path"] == never3.as_str())
                    .cloned()
            });
            if !exe.as_ref().is_some_and(|e| e["source"] == "operator") {
                problems.push(format!(
                    "AGENT: after `admin allow`, the Host profile must hold {never3} with source \
                     operator; found {exe:?}"
                ));
            }
        }
        Err(e) => problems.push(format!("export --format json after allow: {e}")),
    }
    let out = live.agent_cmd(&[
        "export",
        "--admin-socket",
        &live.admin_socket(),
        "--format",
        "tracingpolicy",
        "--hook",
        "tracepoint",
        "--mode",
        "enforce",
    ]);
    fs::write(work.join("export-2.yaml"), &out.stdout).expect("save export");
    let policies = host_policies(&out.stdout).unwrap_or_default();
    assert!(
        out.code == 0 && policies.len() == 1,
        "the re-export after `admin allow` must print exactly one host TracingPolicy; found {}: {}",
        policies.len(),
        out.show()
    );
    let mut strings = Vec::new();
    yaml_strings(&policies[0], &mut strings);
    if !strings.contains(&never3) {
        problems.push(format!(
            "AGENT: the re-export after `admin allow {hostkey} {never3}` does not allow {never3}"
        ));
    }
    let policy_file_2 = work.join("host-policy-2.yaml");
    fs::write(
        &policy_file_2,
        serde_yaml::to_string(&policies[0]).expect("policy YAML"),
    )
    .expect("write policy");
    let unloaded = run(
        &work,
        live.tool("unload").arg(&name),
        Duration::from_secs(30),
    );
    assert_eq!(unloaded.code, 0, "unload {name}: {}", unloaded.show());
    live.policies.retain(|p| p != &name);
    let loaded = run(
        &work,
        live.tool("load-confined").arg(&policy_file_2).arg(&inode),
        Duration::from_secs(90),
    );
    assert_eq!(
        loaded.code,
        0,
        "load-confined refused the re-exported policy (saved in {}): {}",
        policy_file_2.display(),
        loaded.show()
    );
    let name2 = loaded.stdout.trim().to_string();
    live.policies.push(name2.clone());
    let list = live.tp_list();
    fs::write(work.join("tp-list-reloaded.json"), list.to_string()).expect("save tp list");
    assert!(
        policy_state(&list, &name2)
            .is_some_and(|p| p["state"] == "TP_STATE_ENABLED" && p["mode"] == "TP_MODE_ENFORCE"),
        "tp list must show {name2} TP_STATE_ENABLED in TP_MODE_ENFORCE: {list}"
    );
    let ran = live.in_sandbox(&[&never3]);
    println!(
        "live: re-exported policy: allowed {never3}: exit {}",
        ran.code
    );
    if ran.code != 0 {
        problems.push(format!(
            "AGENT: after `admin allow` and the re-exported policy ({}), {never3} must run \
             (exit 0), got {}",
            policy_file_2.display(),
            ran.code
        ));
    }
    match would_deny_id {
        None => problems.push(format!(
            "no would-deny violation of {never2} to acknowledge (reported above)"
        )),
        Some(id) => {
            let ack = live.admin(&["ack", &hostkey, &id]);
            if ack.code != 0 {
                problems.push(format!("AGENT: admin ack failed: {}", ack.show()));
            }
            let v = live.debug_json(&["violations", &hostkey]);
            let acked = v.as_ref().ok().and_then(|v| {
                host_violations(v, &never2, "would-deny")
                    .into_iter()
                    .find(|x| x["id"] == id.as_str())
                    .cloned()
            });
            if !acked.as_ref().is_some_and(|x| x["acknowledged"] == true) {
                problems.push(format!(
                    "AGENT: after `admin ack {hostkey} {id}`, `debug violations` must show that \
                     violation with acknowledged: true; found {acked:?} in {v:?}"
                ));
            }
        }
    }
    timer.lap("allow, re-export, reload; ack");

    assert!(
        problems.is_empty(),
        "live host test: {} expectation(s) failed:\n- {}\n(exported policy: {}; agent log: {})",
        problems.len(),
        problems.join("\n- "),
        policy_file.display(),
        work.join("agent.log").display()
    );
}

// ---------------------------------------------------------------------------
// VM: kprobe `security_bprm_creds_for_exec` and LSM `bprm_creds_for_exec`
// with Override (EPERM), on Debian's 6.1 kernel under QEMU.
// ---------------------------------------------------------------------------

/// `tests/live/vm-guest.sh` writes `/out/results.txt`: one `PHASE LABEL... RC`
/// line per exec, and the agent's exports after each phase.
fn vm_results(text: &str) -> Vec<(String, String, i32)> {
    text.lines()
        .filter_map(|l| {
            let (phase, rest) = l.split_once(' ')?;
            let (label, rc) = rest.rsplit_once(' ')?;
            Some((phase.to_string(), label.to_string(), rc.parse().ok()?))
        })
        .collect()
}

#[test]
fn vm_kprobe_and_lsm_enforce_exactly_what_was_learned() {
    let Ok(vm) = harness(LIVE_VM, "vm-run") else {
        return skip(&harness(LIVE_VM, "vm-run").unwrap_err());
    };
    let _serial = serial();
    let start = Instant::now();
    let work = work_dir("vm");
    let payload = work.join("payload");
    fs::create_dir_all(&payload).expect("payload dir");
    fs::copy(BIN, payload.join("tetragon-learner")).expect("copy the agent");
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/live/vm-guest.sh");
    let out_dir = work.join("out");
    let mut cmd = Command::new(vm.join("vm-run"));
    cmd.args([OsStr::new("--payload"), payload.as_os_str()])
        .args([OsStr::new("--script"), guest.as_os_str()])
        .args([OsStr::new("--out"), out_dir.as_os_str()])
        .args(["--timeout", "480"])
        .die_with_parent(libc::SIGTERM); // vm-run then stops its VM
    let res = run(&work, &mut cmd, Duration::from_secs(540));
    println!(
        "live: vm-run: exit {} in {:.0}s",
        res.code,
        start.elapsed().as_secs_f64()
    );
    if res.code == 77 {
        let _ = fs::remove_dir_all(&work);
        return skip(
            res.stderr
                .trim()
                .lines()
                .last()
                .unwrap_or("vm-run: exit 77"),
        );
    }
    let results = fs::read_to_string(out_dir.join("out/results.txt")).unwrap_or_default();
    let notes = fs::read_to_string(out_dir.join("out/notes.txt")).unwrap_or_default();
    let keep = format!(
        "(kept: {}: out/results.txt, out/notes.txt, out/agent.log, out/policy-*.yaml, \
         out/tplist-*.json, out/learned-*.json, out/violations-*.json, out/policies-*.json, \
         console.log)",
        work.display()
    );
    assert!(
        res.code == 0 && !results.is_empty(),
        "vm-run failed (124: timeout, 125: boot or Tetragon failure): {}\nresults.txt:\n{results}\n{keep}",
        res.show()
    );
    let lines = vm_results(&results);
    let rc = |phase: &str, label: &str| {
        lines
            .iter()
            .find(|(p, l, _)| p == phase && l == label)
            .map(|(_, _, rc)| *rc)
    };
    // The guest workload (see vm-guest.sh), every exec exit 0 while learning and
    // under each enforced policy.
    let workload = [
        "symlink /t/echo -> /bin/busybox",
        "farm /t/farm/echo -> ../bb",
        "farm /t/farm/true -> ../bb",
        "script /t/x.sh",
        "script cd /t && ./x.sh",
        "pre-started /t/pre/sleep again",
    ];
    let mut problems = Vec::new();
    let mut expect = |phase: &str, label: &str, want: i32| match rc(phase, label) {
        Some(got) if got == want => {}
        Some(got) => problems.push(format!("{phase}: {label}: expected exit {want}, got {got}")),
        None => problems.push(format!(
            "{phase}: {label}: no result (expected exit {want})"
        )),
    };
    expect("agent", "ready", 0);
    expect("agent", "hook-views-settled", 0);
    // This kernel has kprobes and the BPF LSM: both observe views load.
    expect("hookview", "opened-active", 0);
    expect("hookview", "loaded-active", 0);
    for label in workload {
        expect("learning", label, 0);
    }
    for hook in ["kprobe", "lsm"] {
        expect(&format!("export-{hook}"), "tracingpolicy enforce", 0);
        expect(&format!("load-{hook}"), "tp add", 0);
        for label in workload {
            expect(&format!("enforce-{hook}"), label, 0);
        }
        // Override with -EPERM: the shell reports 126.
        expect(&format!("enforce-{hook}"), "never-run /t/new/true", 126);
        expect(&format!("follow-{hook}"), "logged", 0);
        expect(&format!("unload-{hook}"), "tp delete", 0);
    }
    // The paths kprobe/LSM bprm_creds_for_exec compare for the guest's execs:
    // links resolved, a script itself (not its interpreter); busybox runs the
    // guest script, tetra and the agent run after the policy is loaded.
    let expected_allowed = [
        "/bin/busybox",
        "/t/bb",
        "/t/x.sh",
        "/t/pre/sleep",
        "/usr/bin/tetra",
        "/payload/tetragon-learner",
    ];
    for hook in ["kprobe", "lsm"] {
        let file = out_dir.join(format!("out/policy-{hook}.yaml"));
        let text = fs::read_to_string(&file).unwrap_or_default();
        match host_policies(&text) {
            Ok(ps) if ps.len() == 1 => {
                let mut strings = Vec::new();
                yaml_strings(&ps[0], &mut strings);
                let missing: Vec<_> = expected_allowed
                    .iter()
                    .filter(|p| !strings.iter().any(|s| s == *p))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("{hook}: the exported policy lacks {missing:?}"));
                }
                if strings.iter().any(|s| s == "/t/new/true") {
                    problems.push(format!("{hook}: the exported policy allows /t/new/true"));
                }
            }
            Ok(ps) => problems.push(format!(
                "{hook}: `export --format tracingpolicy --hook {hook} --mode enforce` must print \
                 exactly one TracingPolicy named tetragon-learner-host-<node> for the Host \
                 learner; found {} in {:?}",
                ps.len(),
                text.chars().take(2000).collect::<String>()
            )),
            Err(e) => problems.push(format!("{hook}: exported policy is not YAML: {e}")),
        }
    }
    for hook in ["kprobe", "lsm"] {
        let file = out_dir.join(format!("out/learned-{hook}.json"));
        let Ok(text) = fs::read_to_string(&file) else {
            continue; // the policy did not load: reported above
        };
        let learned: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        let paths = host_profile(&learned)
            .map(executable_paths)
            .unwrap_or_default();
        // An exec the agent's own policy denied is never learned (a kprobe/LSM
        // denial has no process_exec at all).
        if paths.iter().any(|p| p == "/t/new/true") {
            problems.push(format!(
                "AGENT: {hook}: the agent learned /t/new/true, which its own enforced policy denied"
            ));
        }
    }
    // The denials are violations of the Host learner: `denied`, the path the
    // hook checked, the loaded policy's name (the same for both hooks: one
    // export name per learner), so one violation counted once per hook.
    let mut denied_count = 0;
    for hook in ["kprobe", "lsm"] {
        let exported =
            fs::read_to_string(out_dir.join(format!("out/policy-{hook}.yaml"))).unwrap_or_default();
        let Some(name) = host_policies(&exported).ok().and_then(|ps| {
            ps.first()
                .and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
        }) else {
            continue; // no export: reported above
        };
        if rc(&format!("load-{hook}"), "tp add") != Some(0) {
            continue; // not loaded: reported above
        }
        let text = fs::read_to_string(out_dir.join(format!("out/violations-{hook}.json")))
            .unwrap_or_default();
        let seen: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        let denied = host_violations(&seen, "/t/new/true", "denied");
        denied_count += 1;
        let counted: u64 = denied.iter().filter_map(|v| v["count"].as_u64()).sum();
        if denied.is_empty() || !denied.iter().all(|v| v["policy"] == name.as_str()) {
            problems.push(format!(
                "AGENT: {hook}: after /t/new/true was refused (EPERM, 126) by {name}, `debug \
                 violations --format json` (out/violations-{hook}.json) must show a `denied` \
                 violation of the Host learner with path /t/new/true and policy {name}; it \
                 shows: {text}"
            ));
        } else if counted != denied_count {
            problems.push(format!(
                "AGENT: {hook}: /t/new/true was refused once under each loaded policy so far \
                 ({denied_count}); its `denied` violations count {counted}: {text}"
            ));
        }
        let others: Vec<&Json> = seen
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["violations"].as_array().into_iter().flatten())
            .filter(|v| !(v["path"] == "/t/new/true" && v["mode"] == "denied"))
            .collect();
        if !others.is_empty() {
            problems.push(format!(
                "AGENT: {hook}: only /t/new/true was refused, and every other exec ran under \
                 the policy; yet `debug violations` lists {others:?}"
            ));
        }
        let policies = fs::read_to_string(out_dir.join(format!("out/policies-{hook}.json")))
            .unwrap_or_default();
        let view: Json = serde_json::from_str(&policies).unwrap_or(Json::Null);
        if !agent_policy(&view, &name)
            .is_some_and(|p| p["state"] == "enabled" && p["mode"] == "enforce")
        {
            problems.push(format!(
                "AGENT: {hook}: `debug policies --format json` must show {name} enabled in \
                 mode enforce: {policies}"
            ));
        }
    }
    println!("live: vm notes:\n{notes}");
    println!("live: vm results:\n{results}");
    if problems.is_empty() {
        let _ = fs::remove_dir_all(&work);
    }
    assert!(
        problems.is_empty(),
        "live VM test: {} expectation(s) failed:\n- {}\nresults.txt:\n{results}\nnotes.txt:\n{notes}\n{keep}",
        problems.len(),
        problems.join("\n- ")
    );
}
