//! Crash recovery with real crashes: the agent binary runs against the fake
//! Tetragon binary, is SIGKILLed at random points while it learns, and the sled
//! database is reopened after every kill. Invariants:
//!
//! - every `learned executable` the agent logged before the kill is on disk
//!   (the agent logs it only once the change is durable);
//! - the database always opens and every record decodes;
//! - nothing that was on disk after one kill is gone after the next;
//! - a last, cleanly stopped run ends with exactly the scenario's oracle;
//! - every violation the agent logged (`policy violation`, logged once it is
//!   durable) is on disk after the kill: container 0's workload has one of the
//!   agent's policies loaded (monitor mode, flagging 20 of its executables).
//!
//! `CRASH_KILLS` (default 8) sets the number of kills, `CRASH_SEED` replays a
//! run (the seed is printed), `CRASH_RATE` the fake's exec rate (default 300/s).
//! `scripts/crash-test.sh` runs a longer soak.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tetragon_learner::cli::demo::learner_key;
use tetragon_learner::fake::scenario::Scenario;
use tetragon_learner::learner::key::LearnerKey;
use tetragon_learner::learner::profile::Profile;

const BIN: &str = env!("CARGO_BIN_EXE_tetragon-learner");
const CONTAINERS: usize = 6;

type Learned = BTreeMap<LearnerKey, BTreeSet<String>>;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Many distinct executables, run round robin forever. The count grows with the
/// number of kills so that most runs still meet executables never seen before
/// (capped: every new executable rewrites its whole profile).
fn scenario_yaml(execs_per_container: usize, rate: u64) -> String {
    let mut y = String::from("node_name: crash-node\nkernel_threads: 2\n");
    // The agent's exported policy for ns0/app0 (its name and namespace are the
    // export's), in monitor mode: its first 20 executables are would-deny
    // violations. `Equal` keeps them under the per-learner bound.
    let flagged: Vec<String> = (0..20).map(|e| format!("/usr/bin/tool-0-{e}")).collect();
    y.push_str(&format!(
        "tracing_policies:\n  - {{apiVersion: cilium.io/v1alpha1, kind: TracingPolicyNamespaced, \
         metadata: {{name: deployment-app0, namespace: ns0}}, \
         spec: {{podSelector: {{matchLabels: {{tetragon-learner.io/workload: app0}}}}, \
         options: [{{name: policy-mode, value: monitor}}], \
         tracepoints: [{{subsystem: sched, event: sched_process_exec, raw: true, \
         args: [{{index: 2, type: linux_binprm}}], selectors: [{{matchArgs: [{{index: 2, \
         operator: Equal, values: {flagged:?}}}], matchActions: [{{action: Sigkill}}]}}]}}]}}}}\n"
    ));
    y.push_str("host_processes: [/usr/bin/containerd, /usr/bin/kubelet]\ncontainers:\n");
    for c in 0..CONTAINERS {
        y.push_str(&format!(
            "  - namespace: ns{c}\n    pod: app{c}-5d8f7c6b9d-abc{c}x\n    workload: app{c}\n    \
             workload_kind: Deployment\n    container: main\n    \
             labels: {{tetragon-learner.io/workload: app{c}}}\n    \
             expect_key: ns{c}/Deployment/app{c}/main\n    \
             running: [{{binary: /app/server-{c}}}]\n    execs:\n"
        ));
        for e in 0..execs_per_container {
            y.push_str(&format!("      - {{binary: /usr/bin/tool-{c}-{e}}}\n"));
        }
    }
    y.push_str(&format!(
        "activity: {{rate_per_sec: {rate}, total_execs: 0, start: on-first-client}}\n"
    ));
    y
}

/// A child process that is killed if the test fails before stopping it.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.name);
    }

    fn wait_timeout(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_fake(scenario: &Path, socket: &Path) -> (Proc, String) {
    let child = Command::new(BIN)
        .args(["--log-format", "json", "fake-tetragon", "--listen"])
        .arg(format!("unix://{}", socket.display()))
        .arg("--scenario")
        .arg(scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fake-tetragon starts");
    let mut fake = Proc {
        name: "fake-tetragon",
        child,
    };
    let mut line = String::new();
    BufReader::new(fake.child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("read fake-tetragon stdout");
    let addr = line
        .trim()
        .strip_prefix("fake-tetragon listening on ")
        .unwrap_or_else(|| panic!("unexpected fake-tetragon output {line:?}"))
        .to_string();
    (fake, addr)
}

/// What one agent run said on stderr.
#[derive(Default)]
struct AgentLog {
    learned: Vec<(LearnerKey, String)>,
    /// Violations logged (durable by then): learner and id.
    violations: Vec<(LearnerKey, String)>,
    /// Lines that are not JSON log records (a panic message, say).
    other: Vec<String>,
    errors: Vec<String>,
    lines: usize,
    /// The agent said it started (signal handlers are installed by then).
    started: bool,
}

struct Agent {
    proc: Proc,
    log: Arc<Mutex<AgentLog>>,
    reader: Option<JoinHandle<()>>,
}

fn start_agent(addr: &str, db: &Path) -> Agent {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "--log-level", "info", "run"])
        .args(["--tetragon-address", addr])
        .arg("--db")
        .arg(db)
        .args([
            "--snapshot-grace",
            "200ms",
            "--checkpoint-interval",
            "200ms",
            "--policy-refresh",
            "200ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let log = Arc::new(Mutex::new(AgentLog::default()));
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.lines += 1;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                log.other.push(line);
                continue;
            };
            if v["level"] == "ERROR" {
                log.errors.push(line.clone());
            }
            if v["message"] == "agent started" {
                log.started = true;
            }
            if v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("policy violation"))
            {
                let key = v["learner"]
                    .as_str()
                    .expect("a violation names its learner");
                let id = v["id"].as_str().expect("a violation has an id");
                let key = LearnerKey::parse(key).expect("logged key parses");
                log.violations.push((key, id.to_string()));
            }
            if v["message"] == "learned executable" {
                let key = v["key"].as_str().expect("learned executable has a key");
                let path = v["path"].as_str().expect("learned executable has a path");
                let key = LearnerKey::parse(key).expect("logged key parses");
                log.learned.push((key, path.to_string()));
            }
        }
    });
    Agent {
        proc: Proc {
            name: "agent",
            child,
        },
        log,
        reader: Some(reader),
    }
}

impl Agent {
    /// Waits for the agent's exit and for the end of its stderr.
    fn finish(&mut self, timeout: Duration) -> (ExitStatus, AgentLog) {
        let status = self.proc.wait_timeout(timeout);
        if let Some(r) = self.reader.take() {
            r.join().expect("stderr reader");
        }
        (status, std::mem::take(&mut *self.log.lock().unwrap()))
    }
}

/// Opens the database (retrying while a dying agent still holds the lock) and
/// reads every profile; any decode or open error fails the test.
fn read_profiles(db: &Path, context: &str) -> Vec<Profile> {
    let store = common::store_when_unlocked(db)
        .unwrap_or_else(|e| panic!("{context}: database does not open: {e}"));
    store
        .load_all()
        .unwrap_or_else(|e| panic!("{context}: database does not load: {e}"))
}

/// Every executable on disk, per learner.
fn read_db(db: &Path, context: &str) -> Learned {
    read_profiles(db, context)
        .into_iter()
        .map(|p| (p.key.clone(), p.executables.keys().cloned().collect()))
        .collect()
}

/// Every violation id on disk, per learner.
fn read_violations(db: &Path, context: &str) -> Learned {
    read_profiles(db, context)
        .into_iter()
        .map(|p| (p.key.clone(), p.violations.by_id.keys().cloned().collect()))
        .collect()
}

fn missing_from(learned: &Learned, want: &Learned) -> Vec<(LearnerKey, String)> {
    want.iter()
        .flat_map(|(k, paths)| paths.iter().map(move |p| (k, p)))
        .filter(|(k, p)| !learned.get(*k).is_some_and(|s| s.contains(*p)))
        .map(|(k, p)| (k.clone(), p.clone()))
        .collect()
}

fn count(l: &Learned) -> usize {
    l.values().map(BTreeSet::len).sum()
}

fn check_log(run: &str, log: &AgentLog) {
    assert!(
        log.other.iter().all(|l| !l.contains("panicked")),
        "{run}: the agent panicked: {:?}",
        log.other
    );
    assert!(
        log.errors.is_empty(),
        "{run}: the agent logged errors: {:#?}",
        log.errors
    );
}

#[test]
fn learned_executables_survive_sigkill() {
    let kills = env_u64("CRASH_KILLS", 8);
    let rate = env_u64("CRASH_RATE", 300);
    let seed = env_u64(
        "CRASH_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    // About 1.3 s of learning per run (long enough for the agent to follow
    // its policy and record violations): enough distinct executables that new ones
    // keep appearing throughout the kill loop.
    let per_container = env_u64(
        "CRASH_EXECS_PER_CONTAINER",
        (rate * kills / 2 / CONTAINERS as u64).clamp(25, 400),
    ) as usize;
    println!(
        "crash_recovery: CRASH_SEED={seed} CRASH_KILLS={kills} CRASH_RATE={rate} \
         CRASH_EXECS_PER_CONTAINER={per_container}"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let scenario_path = dir.path().join("scenario.yaml");
    let yaml = scenario_yaml(per_container, rate);
    std::fs::write(&scenario_path, &yaml).unwrap();
    let scenario = Scenario::from_yaml(&yaml, "crash scenario").unwrap();
    let plan_len = scenario.exec_plan().len() as u64;
    // Forever round robin: in the end every exec binary and every running one.
    let oracle: Learned = scenario
        .expected_profiles(plan_len)
        .unwrap()
        .iter()
        .map(|(k, paths)| (learner_key(k), paths.clone()))
        .collect();
    let db: PathBuf = dir.path().join("db");
    let (mut fake, addr) = start_fake(&scenario_path, &dir.path().join("tetragon.sock"));

    let mut on_disk = Learned::new();
    let mut reported_total = 0usize;
    let mut violations_total = 0usize;
    for round in 1..=kills {
        let run = format!("kill {round}/{kills} (CRASH_SEED={seed})");
        let mut agent = start_agent(&addr, &db);
        let delay = Duration::from_millis(rng.random_range(100..=2_500));
        std::thread::sleep(delay);
        if let Some(status) = agent.proc.child.try_wait().unwrap() {
            let (_, log) = agent.finish(Duration::from_secs(1));
            panic!(
                "{run}: the agent exited on its own ({status}) after {} lines; other output: {:?}; errors: {:?}",
                log.lines, log.other, log.errors
            );
        }
        agent.proc.signal(libc::SIGKILL);
        let (status, log) = agent.finish(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{run}: {status}"
        );
        check_log(&run, &log);

        let now = read_db(&db, &run);
        let mut reported = Learned::new();
        for (k, p) in &log.learned {
            reported.entry(k.clone()).or_default().insert(p.clone());
        }
        let lost = missing_from(&now, &reported);
        assert!(
            lost.is_empty(),
            "{run}: killed after {delay:?}; {} of {} reported executables are not in the database: {lost:?}",
            lost.len(),
            log.learned.len()
        );
        let mut logged = Learned::new();
        for (k, id) in &log.violations {
            logged.entry(k.clone()).or_default().insert(id.clone());
        }
        let violations_now = read_violations(&db, &run);
        let lost = missing_from(&violations_now, &logged);
        assert!(
            lost.is_empty(),
            "{run}: violations reported before the kill are not in the database: {lost:?}"
        );
        violations_total += log.violations.len();
        let vanished = missing_from(&now, &on_disk);
        assert!(
            vanished.is_empty(),
            "{run}: executables on disk after the previous kill are gone: {vanished:?}"
        );
        let unexpected = missing_from(&oracle, &now);
        assert!(
            unexpected.is_empty(),
            "{run}: learned what the scenario never ran: {unexpected:?}"
        );
        println!(
            "{run}: killed after {delay:?}; reported {} new, {} on disk (+{})",
            log.learned.len(),
            count(&now),
            count(&now) - count(&on_disk),
        );
        reported_total += log.learned.len();
        on_disk = now;
    }

    // A last run until everything was learned (one full round robin at most),
    // then a clean stop: the database holds exactly the oracle.
    let mut agent = start_agent(&addr, &db);
    let cycle = Duration::from_secs_f64(plan_len as f64 / rate.max(1) as f64);
    let deadline = Instant::now() + cycle * 2 + Duration::from_secs(15);
    loop {
        let mut known = on_disk.clone();
        for (k, p) in &agent.log.lock().unwrap().learned {
            known.entry(k.clone()).or_default().insert(p.clone());
        }
        // A SIGTERM before the agent installed its handlers would simply kill it.
        if missing_from(&known, &oracle).is_empty() && agent.log.lock().unwrap().started {
            break;
        }
        assert!(
            agent.proc.child.try_wait().unwrap().is_none(),
            "final run: the agent exited on its own"
        );
        assert!(
            Instant::now() < deadline,
            "final run: still missing {:?}",
            missing_from(&known, &oracle)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.proc.signal(libc::SIGTERM);
    let (status, log) = agent.finish(Duration::from_secs(15));
    check_log("final run", &log);
    assert!(status.success(), "final run: SIGTERM gave {status}");
    let last = read_db(&db, "final run");
    assert_eq!(
        last, oracle,
        "final run: the database does not hold exactly the scenario's oracle"
    );

    fake.signal(libc::SIGTERM);
    let status = fake.wait_timeout(Duration::from_secs(10));
    assert!(status.success(), "fake-tetragon: SIGTERM gave {status}");
    let final_violations = read_violations(&db, "final run");
    let flagged = final_violations
        .get(&LearnerKey::new("ns0", "Deployment", "app0", "main"))
        .map(BTreeSet::len)
        .unwrap_or(0);
    assert!(
        flagged > 0,
        "final run: no violation of ns0/app0 recorded by its monitor-mode policy"
    );
    println!(
        "crash_recovery: {kills} kills, {reported_total} executables and {violations_total} violations \
         reported before kills, none lost; final {} executables in {} profiles, {flagged} violations \
         of ns0/app0; {:.1?} in all",
        count(&last),
        last.len(),
        started.elapsed()
    );
}
