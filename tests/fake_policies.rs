//! The fake Tetragon's tracing policies over a real unix socket: the paths
//! its policy events carry follow the real captures
//! (`tests/fixtures/real/hook-events/`, expected values written out by hand),
//! Add/List/Delete answer as Tetragon does, `policy_names` filters, and
//! enforce/monitor modes deny, kill or only report.
mod common;

use std::time::Duration;

use common::wait_until;
use tetragon_learner::fake::hook_events::Outcome;
use tetragon_learner::fake::scenario::{ExecSpec, Scenario};
use tetragon_learner::fake::{FakeSource, FakeTetragon};
use tetragon_learner::tetragon::address::TetragonAddress;
use tetragon_learner::tetragon::client::connect;
use tetragon_learner::tetragon::proto::fine_guidance_sensors_client::FineGuidanceSensorsClient;
use tetragon_learner::tetragon::proto::{
    get_events_response::Event, kprobe_argument::Arg, AddTracingPolicyRequest,
    DeleteTracingPolicyRequest, Filter, GetDebugRequest, GetEventsRequest, GetEventsResponse,
    KprobeAction, KprobeArgument, ListTracingPoliciesRequest, TracingPolicyMode,
    TracingPolicyState,
};
use tonic::transport::Channel;

const POLICIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/real/hook-events/policies"
);

/// Container 0: the VM of the captures (`/bin/sh -> /bin/busybox`, `/t/echo ->
/// busybox`, `/t/x.sh` a `#!/bin/sh` script, `/t/sl.sh -> x.sh`), with a
/// script already running. Container 1: the Debian host (`/bin -> usr/bin`,
/// `sh -> dash`). Container 2: another namespace.
const SCENARIO: &str = r#"
node_name: fake-vm
containers:
  - namespace: shop
    pod: web-0
    labels: {app: web}
    container: app
    running:
      - {binary: /bin/sh, arguments: "-c 'sleep 1d'"}
      - {binary: /t/x.sh, arguments: bg, cwd: /t}
    files:
      /bin/sh: {link: /bin/busybox}
      /t/echo: {link: busybox}
      /t/x.sh: {script: /bin/sh}
      /t/sl.sh: {link: x.sh}
      /t/ul: {link: unlisted}
  - namespace: shop
    pod: debian-0
    labels: {app: debian}
    container: main
    running: [{binary: /bin/sh}]
    files:
      /bin: {link: usr/bin}
      /usr/bin/sh: {link: dash}
      /opt/enf/x.sh: {script: /bin/sh}
  - namespace: bank
    pod: teller-0
    labels: {app: web}
    container: app
    running: [{binary: /app/teller}]
"#;

async fn start(
    scenario: &str,
) -> (
    tempfile::TempDir,
    FakeTetragon,
    FineGuidanceSensorsClient<Channel>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = Scenario::from_yaml(scenario, "test").expect("scenario");
    let addr = TetragonAddress::Unix(dir.path().join("tetragon.sock"));
    let fake = FakeTetragon::start(&addr, FakeSource::Scenario(scenario), None)
        .await
        .expect("fake starts");
    let channel = connect(&fake.address, Duration::from_secs(5))
        .await
        .expect("connects");
    (dir, fake, FineGuidanceSensorsClient::new(channel))
}

async fn add(
    c: &mut FineGuidanceSensorsClient<Channel>,
    fixture: &str,
) -> Result<(), tonic::Status> {
    let yaml = std::fs::read_to_string(format!("{POLICIES}/{fixture}")).expect("fixture");
    add_yaml(c, &yaml).await
}

async fn add_yaml(
    c: &mut FineGuidanceSensorsClient<Channel>,
    yaml: &str,
) -> Result<(), tonic::Status> {
    c.add_tracing_policy(AddTracingPolicyRequest {
        yaml: yaml.to_string(),
        domain: String::new(),
    })
    .await
    .map(|_| ())
}

fn exec(binary: &str, arguments: &str, cwd: &str) -> ExecSpec {
    ExecSpec {
        binary: binary.into(),
        arguments: arguments.into(),
        cwd: Some(cwd.into()),
        ..ExecSpec::default()
    }
}

/// Opens a stream with `filter`, runs `execs` (container, spec) once it is
/// open, and returns what it received until the feed is quiet.
async fn watch(
    fake: &FakeTetragon,
    client: &FineGuidanceSensorsClient<Channel>,
    filter: Option<Filter>,
    execs: &[(usize, ExecSpec)],
) -> (Vec<GetEventsResponse>, Vec<Outcome>) {
    let mut c = client.clone();
    let opened = fake.streams_opened();
    let req = GetEventsRequest {
        allow_list: filter.into_iter().collect(),
        ..Default::default()
    };
    let reader = tokio::spawn(async move {
        let mut stream = c.get_events(req).await.expect("GetEvents").into_inner();
        let mut got = Vec::new();
        while let Ok(Ok(Some(ev))) =
            tokio::time::timeout(Duration::from_millis(500), stream.message()).await
        {
            got.push(ev);
        }
        got
    });
    wait_until("stream open", Duration::from_secs(5), || {
        fake.streams_opened() > opened
    })
    .await;
    let outcomes = execs
        .iter()
        .map(|(ci, spec)| fake.exec_spec_in(*ci, spec, false))
        .collect();
    (reader.await.expect("reader"), outcomes)
}

fn path_of(args: &[KprobeArgument]) -> String {
    args.iter()
        .filter_map(|a| match &a.arg {
            Some(Arg::LinuxBinprmArg(b)) => Some(b.path.clone()),
            Some(Arg::StringArg(s)) => Some(format!("string:{s}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn action(a: i32) -> &'static str {
    match KprobeAction::try_from(a) {
        Ok(KprobeAction::Post) => "POST",
        Ok(KprobeAction::Override) => "OVERRIDE",
        Ok(KprobeAction::Sigkill) => "SIGKILL",
        _ => "?",
    }
}

/// One line per event: what a reader of the captures compares.
fn line(ev: &GetEventsResponse) -> String {
    match ev.event.as_ref().expect("event") {
        Event::ProcessKprobe(k) => format!(
            "kprobe {} {} {} {}",
            k.function_name,
            k.policy_name,
            path_of(&k.args),
            action(k.action)
        ),
        Event::ProcessLsm(l) => format!(
            "lsm {} {} {} {}",
            l.function_name,
            l.policy_name,
            path_of(&l.args),
            action(l.action)
        ),
        Event::ProcessTracepoint(t) => format!(
            "tracepoint {} {} {}",
            t.policy_name,
            path_of(&t.args),
            action(t.action)
        ),
        Event::ProcessExec(e) => {
            let p = e.process.as_ref().expect("process");
            format!("exec {} [{}]", p.binary, p.arguments)
        }
        Event::ProcessExit(e) => {
            let p = e.process.as_ref().expect("process");
            format!("exit {} {} {}", p.binary, e.status, e.signal)
                .trim_end()
                .to_string()
        }
        Event::RateLimitInfo(_) => "ratelimit".into(),
    }
}

fn lines(evs: &[GetEventsResponse]) -> Vec<String> {
    evs.iter().map(line).collect()
}

#[tokio::test]
async fn observe_policies_of_each_shape_show_the_paths_of_the_real_captures() {
    let (_dir, fake, mut c) = start(SCENARIO).await;
    for p in [
        "kprobe-creds-observe.yaml",
        "lsm-observe-post.yaml",
        "kprobe-bprm-check-observe.yaml",
        "lsm-observe-noselector.yaml",
        "enf-raw-all.yaml",
    ] {
        add(&mut c, p).await.expect(p);
    }
    let execs = [
        (0, exec("/t/busybox", "echo direct-ok", "/payload")),
        (0, exec("/t/echo", "symlink-ok", "/payload")),
        (0, exec("/bin/sh", "-c x", "/payload")),
        (0, exec("/t/x.sh", "abs", "/payload")),
        (0, exec("./x.sh", "rel", "/t")),
        (0, exec("/t/sl.sh", "sl", "/payload")),
    ];
    let (events, _) = watch(&fake, &c, None, &execs).await;
    // Per exec, as in vm/observe.*.jsonl, plus the raw tracepoint after the
    // exec (the loaded file: a script's interpreter).
    let one = |opened: &str, checked: &[&str], exec: &str, loaded: &str, exit: &str| {
        let mut v = vec![
            format!("kprobe security_bprm_creds_for_exec kprobe-creds-observe {opened} POST"),
            format!("lsm bprm_creds_for_exec lsm-observe-post {opened} POST"),
        ];
        v.extend(
            checked
                .iter()
                .map(|f| format!("kprobe security_bprm_check kprobe-bprm-check-observe {f} POST")),
        );
        v.push(exec.to_string());
        v.push(format!("tracepoint enf-raw-all {loaded} POST"));
        v.push(format!("exit {exit} 0"));
        v
    };
    let expected: Vec<String> = [
        one(
            "/t/busybox",
            &["/t/busybox"],
            "exec /t/busybox [echo direct-ok]",
            "/t/busybox",
            "/t/busybox",
        ),
        one(
            "/t/busybox",
            &["/t/busybox"],
            "exec /t/echo [symlink-ok]",
            "/t/busybox",
            "/t/echo",
        ),
        one(
            "/bin/busybox",
            &["/bin/busybox"],
            "exec /bin/sh [-c x]",
            "/bin/busybox",
            "/bin/sh",
        ),
        one(
            "/t/x.sh",
            &["/t/x.sh", "/bin/busybox"],
            "exec /t/x.sh [/t/x.sh abs]",
            "/bin/busybox",
            "/t/x.sh",
        ),
        one(
            "/t/x.sh",
            &["/t/x.sh", "/bin/busybox"],
            "exec /t/x.sh [./x.sh rel]",
            "/bin/busybox",
            "/t/x.sh",
        ),
        one(
            "/t/x.sh",
            &["/t/x.sh", "/bin/busybox"],
            "exec /t/sl.sh [/t/sl.sh sl]",
            "/bin/busybox",
            "/t/sl.sh",
        ),
    ]
    .concat();
    assert_eq!(lines(&events), expected);

    // A hook event's process is the caller before the exec: same pid, its
    // own exec_id, its time before the exec's start; the tracepoint's is the
    // exec itself.
    let Some(Event::ProcessKprobe(k)) = &events[0].event else {
        panic!("kprobe first")
    };
    let Some(Event::ProcessExec(x)) = &events[3].event else {
        panic!("exec 4th")
    };
    let Some(Event::ProcessTracepoint(t)) = &events[4].event else {
        panic!("tp 5th")
    };
    let (caller, new) = (k.process.as_ref().unwrap(), x.process.as_ref().unwrap());
    assert_eq!(caller.pid, new.pid);
    assert_ne!(caller.exec_id, new.exec_id);
    assert_eq!(
        caller.binary, "/bin/busybox",
        "the caller still runs its parent's image"
    );
    let secs = |t: &pbjson_types::Timestamp| (t.seconds, t.nanos);
    assert!(secs(events[0].time.as_ref().unwrap()) < secs(new.start_time.as_ref().unwrap()));
    assert!(secs(caller.start_time.as_ref().unwrap()) < secs(events[0].time.as_ref().unwrap()));
    assert_eq!(t.process.as_ref().unwrap().exec_id, new.exec_id);
    assert_eq!(caller.parent_exec_id, new.parent_exec_id);

    // Processes already running are named by /proc/PID/exe (the loaded file),
    // a script's arguments starting with its path, as Tetragon's scan gives them.
    let dump = c
        .get_debug(GetDebugRequest { flag: 1, arg: None })
        .await
        .expect("GetDebug")
        .into_inner();
    let Some(tetragon_learner::tetragon::proto::get_debug_response::Arg::Processes(procs)) =
        dump.arg
    else {
        panic!("a process dump")
    };
    let shop: Vec<(String, String, String)> = procs
        .processes
        .iter()
        .filter_map(|p| p.process.as_ref())
        .filter(|p| p.pod.as_ref().is_some_and(|x| x.name == "web-0"))
        .map(|p| (p.binary.clone(), p.arguments.clone(), p.cwd.clone()))
        .collect();
    assert_eq!(
        shop,
        vec![
            ("/bin/busybox".into(), "-c 'sleep 1d'".into(), "/".into()),
            ("/bin/busybox".into(), "/t/x.sh bg".into(), "/t".into()),
        ]
    );
    fake.stop().await;
}

#[tokio::test]
async fn raw_and_plain_tracepoints_on_the_debian_host_layout() {
    let (_dir, fake, mut c) = start(SCENARIO).await;
    add(&mut c, "enf-raw-all.yaml").await.unwrap();
    add(&mut c, "enf-tp-all.yaml").await.unwrap();
    let execs = [
        (1, exec("/bin/sh", "-c x", "/")),
        (1, exec("./x.sh", "", "/opt/enf")),
        (1, exec("/usr/bin/id", "-u", "/")),
    ];
    let (events, _) = watch(&fake, &c, None, &execs).await;
    assert_eq!(
        lines(&events),
        vec![
            "exec /bin/sh [-c x]",
            "tracepoint enf-raw-all /usr/bin/dash POST",
            "tracepoint enf-tp-all string:/bin/sh POST",
            "exit /bin/sh 0",
            "exec /opt/enf/x.sh [./x.sh]",
            "tracepoint enf-raw-all /usr/bin/dash POST",
            "tracepoint enf-tp-all string:./x.sh POST",
            "exit /opt/enf/x.sh 0",
            "exec /usr/bin/id [-u]",
            "tracepoint enf-raw-all /usr/bin/id POST",
            "tracepoint enf-tp-all string:/usr/bin/id POST",
            "exit /usr/bin/id 0",
        ]
    );
    fake.stop().await;
}

#[tokio::test]
async fn add_list_delete_and_refusals_as_tetragon() {
    // The VM's kernel (no override_return, no fmod_ret on syscalls), outside
    // Kubernetes, one policy preloaded from the scenario.
    let scenario = format!(
        "{SCENARIO}\nkernel: {{override_return: false, fmodret_syscall: false}}\nkubernetes: false\ntracing_policies:\n  - {{apiVersion: cilium.io/v1alpha1, kind: TracingPolicy, metadata: {{name: preloaded}}, spec: {{lsmhooks: [{{hook: bprm_creds_for_exec}}]}}}}\n"
    );
    let (_dir, fake, mut c) = start(&scenario).await;
    add(&mut c, "kprobe-creds-observe.yaml").await.unwrap();
    let dup = add(&mut c, "kprobe-creds-observe.yaml").await.unwrap_err();
    assert_eq!(dup.code(), tonic::Code::Unknown);
    assert_eq!(
        dup.message(),
        "failed to add tracing policy {kprobe-creds-observe  grpc}, a sensor collection with the key already exists"
    );
    let refused = add(&mut c, "refused-override-syscall.yaml")
        .await
        .unwrap_err();
    assert_eq!(
        refused.message(),
        "policy handler 'tracing' failed loading policy 'refused-override-syscall': override validation failed: override action not supported on syscalls, bpf_override_return helper not available"
    );
    let namespaced = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata: {name: ns-pol, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  lsmhooks: [{hook: bprm_creds_for_exec}]\n";
    let e = add_yaml(&mut c, namespaced).await.unwrap_err();
    assert_eq!(
        e.message(),
        "podSelector not allowed in non-k8s environment"
    );

    let list = c
        .list_tracing_policies(ListTracingPoliciesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .policies;
    let rows: Vec<(u64, &str, &str, &str, i32, i32, u64)> = list
        .iter()
        .map(|p| {
            (
                p.id,
                p.name.as_str(),
                p.namespace.as_str(),
                p.domain.as_str(),
                p.state,
                p.mode,
                p.kernel_memory_bytes,
            )
        })
        .collect();
    let (enabled, load_error) = (
        TracingPolicyState::TpStateEnabled as i32,
        TracingPolicyState::TpStateLoadError as i32,
    );
    let (monitor_only, unknown) = (
        TracingPolicyMode::TpModeMonitorOnly as i32,
        TracingPolicyMode::TpModeUnknown as i32,
    );
    assert_eq!(
        rows,
        vec![
            (2, "preloaded", "", "static", enabled, monitor_only, 565_248),
            (
                3,
                "kprobe-creds-observe",
                "",
                "grpc",
                enabled,
                monitor_only,
                393_216
            ),
            (
                4,
                "refused-override-syscall",
                "",
                "grpc",
                load_error,
                unknown,
                0
            ),
            (5, "ns-pol", "shop", "grpc", load_error, unknown, 0),
        ]
    );
    assert_eq!(list[2].error, refused.message());
    assert_eq!(list[1].sensors, vec!["generic_kprobe"]);
    assert_eq!(list[1].stats.unwrap().action_counters.unwrap().post, 0);

    let del = |name: &str, namespace: &str| DeleteTracingPolicyRequest {
        name: name.into(),
        namespace: namespace.into(),
        domain: String::new(),
    };
    c.delete_tracing_policy(del("ns-pol", "shop"))
        .await
        .unwrap();
    c.delete_tracing_policy(del("kprobe-creds-observe", ""))
        .await
        .unwrap();
    let gone = c
        .delete_tracing_policy(del("kprobe-creds-observe", ""))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::Unknown);
    assert_eq!(
        gone.message(),
        "tracing policy {kprobe-creds-observe  grpc} does not exist"
    );
    let names: Vec<String> = c
        .list_tracing_policies(ListTracingPoliciesRequest {
            domain: "grpc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .policies
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["refused-override-syscall"]);
    fake.stop().await;

    // An old Tetragon has none of the three.
    let old = format!("{SCENARIO}\nfaults: {{tracing_policies: unimplemented}}\n");
    let (_dir, fake, mut c) = start(&old).await;
    assert_eq!(
        add(&mut c, "kprobe-creds-observe.yaml")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unimplemented
    );
    let list = c
        .list_tracing_policies(ListTracingPoliciesRequest::default())
        .await;
    assert_eq!(list.unwrap_err().code(), tonic::Code::Unimplemented);
    let del = c.delete_tracing_policy(del("x", "")).await;
    assert_eq!(del.unwrap_err().code(), tonic::Code::Unimplemented);
    fake.stop().await;
}

#[tokio::test]
async fn policy_names_filter_and_namespaced_scope() {
    let (_dir, fake, mut c) = start(SCENARIO).await;
    add(&mut c, "kprobe-creds-observe.yaml").await.unwrap();
    let namespaced = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicyNamespaced\nmetadata: {name: shop-web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  containerSelector: {matchExpressions: [{key: name, operator: In, values: [app]}]}\n  kprobes: [{call: security_bprm_creds_for_exec, args: [{index: 0, type: linux_binprm}]}]\n";
    add_yaml(&mut c, namespaced).await.unwrap();
    let filter = Filter {
        policy_names: vec!["shop-web".into()],
        ..Default::default()
    };
    let execs = [
        (0, exec("/t/echo", "", "/")),     // shop, app=web: in scope
        (1, exec("/usr/bin/id", "", "/")), // shop, app=debian: out
        (2, exec("/app/teller", "", "/")), // bank: out
    ];
    let (events, _) = watch(&fake, &c, Some(filter), &execs).await;
    assert_eq!(
        lines(&events),
        vec!["kprobe security_bprm_creds_for_exec shop-web /t/busybox POST"]
    );
    let list = c
        .list_tracing_policies(ListTracingPoliciesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!((list[0].filter_id, list[1].filter_id), (0, 3));
    let posts: Vec<u64> = list
        .iter()
        .map(|p| p.stats.unwrap().action_counters.unwrap().post)
        .collect();
    assert_eq!(posts, vec![3, 1], "the node-wide policy saw every exec");
    fake.stop().await;
}

fn counters(
    list: &[tetragon_learner::tetragon::proto::TracingPolicyStatus],
) -> (u64, u64, u64, u64, u64) {
    let c = list[0].stats.unwrap().action_counters.unwrap();
    (
        c.post,
        c.r#override,
        c.monitor_override,
        c.signal,
        c.monitor_signal,
    )
}

async fn list(
    c: &mut FineGuidanceSensorsClient<Channel>,
) -> Vec<tetragon_learner::tetragon::proto::TracingPolicyStatus> {
    c.list_tracing_policies(ListTracingPoliciesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .policies
}

#[tokio::test]
async fn override_denies_in_enforce_mode_and_only_reports_in_monitor_mode() {
    let (_dir, fake, mut c) = start(SCENARIO).await;
    add(&mut c, "kprobe-allowlist-enforce.yaml").await.unwrap();
    let unlisted = [(0, exec("/t/ul", "ul", "/payload"))];
    let (events, outcomes) = watch(&fake, &c, None, &unlisted).await;
    assert_eq!(outcomes, vec![Outcome::Denied]);
    // No process_exec; the caller (a shell child) exits 126.
    assert_eq!(
        lines(&events),
        vec![
            "kprobe security_bprm_creds_for_exec kprobe-allowlist-enforce /t/unlisted OVERRIDE",
            "exit /bin/busybox 126",
        ]
    );
    // An allowed exec through a symlink runs without any hook event.
    let (events, _) = watch(&fake, &c, None, &[(0, exec("/t/echo", "", "/"))]).await;
    assert_eq!(lines(&events), vec!["exec /t/echo []", "exit /t/echo 0"]);

    fake.set_policy_mode("kprobe-allowlist-enforce", "", false)
        .unwrap();
    let (events, outcomes) = watch(&fake, &c, None, &unlisted).await;
    assert_eq!(outcomes, vec![Outcome::Ran]);
    assert_eq!(
        lines(&events),
        vec![
            "kprobe security_bprm_creds_for_exec kprobe-allowlist-enforce /t/unlisted OVERRIDE",
            "exec /t/ul [ul]",
            "exit /t/ul 0",
        ]
    );
    let l = list(&mut c).await;
    assert_eq!(l[0].mode, TracingPolicyMode::TpModeMonitor as i32);
    assert_eq!(counters(&l), (2, 1, 1, 0, 0));

    // LSM: same shape; its NPOST stays 0 as on the real one.
    c.delete_tracing_policy(DeleteTracingPolicyRequest {
        name: "kprobe-allowlist-enforce".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    add(&mut c, "lsm-allowlist-enforce.yaml").await.unwrap();
    let (events, _) = watch(
        &fake,
        &c,
        None,
        &[(0, exec("./x.sh", "", "/t")), (0, exec("/t/ul", "", "/"))],
    )
    .await;
    assert_eq!(
        lines(&events),
        vec![
            "exec /t/x.sh [./x.sh]",
            "exit /t/x.sh 0",
            "lsm bprm_creds_for_exec lsm-allowlist-enforce /t/unlisted OVERRIDE",
            "exit /bin/busybox 126",
        ]
    );
    assert_eq!(counters(&list(&mut c).await), (0, 1, 0, 0, 0));
    fake.stop().await;
}

#[tokio::test]
async fn sigkill_kills_after_the_exec_in_enforce_mode_only() {
    let (_dir, fake, mut c) = start(SCENARIO).await;
    add(&mut c, "enf-raw-kill.yaml").await.unwrap();
    let execs = [
        (1, exec("/usr/bin/id", "-u", "/")),
        (1, exec("/usr/bin/true", "", "/")),
    ];
    let (events, outcomes) = watch(&fake, &c, None, &execs).await;
    assert_eq!(outcomes, vec![Outcome::Killed, Outcome::Ran]);
    assert_eq!(
        lines(&events),
        vec![
            "exec /usr/bin/id [-u]",
            "tracepoint enf-raw-kill /usr/bin/id SIGKILL",
            "exit /usr/bin/id 0 SIGKILL",
            "exec /usr/bin/true []",
            "exit /usr/bin/true 0",
        ]
    );
    assert_eq!(counters(&list(&mut c).await), (1, 0, 0, 1, 0));
    fake.set_policy_mode("enf-raw-kill", "", false).unwrap();
    let (events, _) = watch(&fake, &c, None, &execs[..1]).await;
    assert_eq!(
        lines(&events),
        vec![
            "exec /usr/bin/id [-u]",
            "tracepoint enf-raw-kill /usr/bin/id SIGKILL",
            "exit /usr/bin/id 0",
        ]
    );
    // As host/tp-list-monitor.json after one kill and one would-kill.
    assert_eq!(counters(&list(&mut c).await), (2, 0, 0, 1, 1));
    fake.set_policy_mode("enf-raw-kill", "", true).unwrap();
    let (_, outcomes) = watch(&fake, &c, None, &execs[..1]).await;
    assert_eq!(outcomes, vec![Outcome::Killed]);
    fake.stop().await;
}

/// The example in the README's "The fake Tetragon" section is a valid
/// scenario and shows what it says.
#[tokio::test]
async fn the_readme_example_scenario_holds() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = &readme[readme.find("## The fake Tetragon").expect("section")..];
    let from = section.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let yaml = &section[from..from + section[from..].find("```").expect("end")];
    let (_dir, fake, mut c) = start(yaml).await;
    let l = list(&mut c).await;
    assert_eq!(
        (l[0].name.as_str(), l[0].domain.as_str()),
        ("watch", "static")
    );
    let running: Vec<(String, String)> = fake
        .state
        .node
        .lock()
        .dump()
        .into_iter()
        .filter_map(|p| p.process)
        .filter(|p| p.pod.is_some())
        .map(|p| (p.binary, p.arguments))
        .collect();
    assert_eq!(
        running,
        vec![("/usr/bin/dash".to_string(), "/opt/x.sh bg".to_string())]
    );
    fake.stop().await;
}
