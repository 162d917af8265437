//! Offline checks of `deploy/`: the manifests parse, the DaemonSet keeps its
//! security properties and host access, and every flag, environment variable
//! and reference in them exists (in the CLI, or among the manifests).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

const NAMESPACE: &str = "tetragon-learner";
const SOCKET_DIR: &str = "/var/run/tetragon";
const EXPORT_DIR: &str = "/var/run/cilium/tetragon";
const STATE_DIR: &str = "/var/lib/tetragon-learner";
/// In-memory emptyDir for the admin socket.
const ADMIN_DIR: &str = "/run/tetragon-learner";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

struct Doc {
    file: String,
    value: Value,
}

/// Every YAML document of every `deploy/*.yaml` file.
fn docs() -> &'static [Doc] {
    static DOCS: OnceLock<Vec<Doc>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
            .expect("deploy/ exists")
            .map(|e| e.expect("readable deploy/ entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no YAML files in deploy/");
        let mut out = Vec::new();
        for path in files {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable YAML");
            for de in serde_yaml::Deserializer::from_str(&text) {
                let value = Value::deserialize(de)
                    .unwrap_or_else(|e| panic!("{file}: not valid YAML: {e}"));
                if !value.is_null() {
                    out.push(Doc {
                        file: file.clone(),
                        value,
                    });
                }
            }
        }
        out
    })
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn kind(v: &Value) -> &str {
    s(v, "kind").unwrap_or("")
}

fn name(v: &Value) -> &str {
    v.get("metadata")
        .and_then(|m| s(m, "name"))
        .unwrap_or_default()
}

fn objects(k: &str) -> Vec<&'static Value> {
    docs()
        .iter()
        .map(|d| &d.value)
        .filter(|v| kind(v) == k)
        .collect()
}

fn the(k: &str) -> &'static Value {
    let found = objects(k);
    assert_eq!(found.len(), 1, "expected exactly one {k} in deploy/");
    found[0]
}

fn seq(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn daemonset() -> &'static Value {
    the("DaemonSet")
}

fn pod_spec() -> &'static Value {
    daemonset()
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .expect("DaemonSet spec.template.spec")
}

/// Containers and init containers alike: the security rules hold for both.
fn all_containers() -> Vec<&'static Value> {
    let spec = pod_spec();
    seq(spec.get("containers"))
        .iter()
        .chain(seq(spec.get("initContainers")))
        .collect()
}

fn agent() -> &'static Value {
    let containers = seq(pod_spec().get("containers"));
    assert_eq!(containers.len(), 1, "one agent container");
    &containers[0]
}

fn args() -> Vec<&'static str> {
    seq(agent().get("args"))
        .iter()
        .map(|a| a.as_str().expect("args are strings"))
        .collect()
}

/// The value of `--flag value` or `--flag=value` in the agent's args.
fn arg_value(flag: &str) -> &'static str {
    let args = args();
    for (i, a) in args.iter().enumerate() {
        if *a == flag {
            return args
                .get(i + 1)
                .unwrap_or_else(|| panic!("{flag} without a value"));
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return v;
        }
    }
    panic!("the DaemonSet does not pass {flag}")
}

fn run_help() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_tetragon-learner"))
            .args(["run", "--help"])
            .env_clear()
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "`run --help` failed: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8 help")
    })
}

fn configmap_data() -> BTreeMap<String, String> {
    let cm = the("ConfigMap");
    cm.get("data")
        .and_then(Value::as_mapping)
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| {
            let k = k.as_str().expect("string key").to_owned();
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("ConfigMap {k}: quote the value, env vars are strings"))
                .to_owned();
            (k, v)
        })
        .collect()
}

fn path_within(path: &str, dir: &str) -> bool {
    Path::new(path).starts_with(dir) && path != dir
}

#[test]
fn every_document_is_a_kubernetes_object_in_our_namespace() {
    for d in docs() {
        let v = &d.value;
        if kind(v) == "Kustomization" {
            continue;
        }
        assert!(s(v, "apiVersion").is_some(), "{}: no apiVersion", d.file);
        assert!(!kind(v).is_empty(), "{}: no kind", d.file);
        assert!(!name(v).is_empty(), "{}: no metadata.name", d.file);
        if kind(v) == "Namespace" {
            assert_eq!(name(v), NAMESPACE);
        } else {
            let ns = v.get("metadata").and_then(|m| s(m, "namespace"));
            assert_eq!(ns, Some(NAMESPACE), "{}: {} {}", d.file, kind(v), name(v));
        }
    }
    the("Namespace");
}

#[test]
fn kustomization_lists_every_manifest() {
    let Some(k) = objects("Kustomization").first().copied() else {
        return;
    };
    let listed: BTreeSet<&str> = seq(k.get("resources"))
        .iter()
        .map(|r| r.as_str().expect("resource paths are strings"))
        .collect();
    let files: BTreeSet<&str> = docs()
        .iter()
        .filter(|d| kind(&d.value) != "Kustomization")
        .map(|d| d.file.as_str())
        .collect();
    assert_eq!(listed, files);
}

#[test]
fn daemonset_is_apps_v1_with_matching_selector() {
    let ds = daemonset();
    assert_eq!(s(ds, "apiVersion"), Some("apps/v1"));
    let selector = ds
        .get("spec")
        .and_then(|s| s.get("selector"))
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_mapping)
        .expect("spec.selector.matchLabels");
    assert!(!selector.is_empty());
    let labels = ds
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_mapping)
        .expect("template labels");
    for (k, v) in selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "selector label {k:?} not on the pod"
        );
    }
}

#[test]
fn rolling_update_never_runs_two_agents_on_one_database() {
    let surge = daemonset()
        .get("spec")
        .and_then(|s| s.get("updateStrategy"))
        .and_then(|u| u.get("rollingUpdate"))
        .and_then(|r| r.get("maxSurge"));
    let no_surge = match surge {
        None => true,
        Some(Value::Number(n)) => n.as_u64() == Some(0),
        Some(Value::String(s)) => s == "0" || s == "0%",
        Some(_) => false,
    };
    assert!(no_surge, "maxSurge > 0 would open the sled database twice");
}

#[test]
fn pod_stays_in_its_own_namespaces() {
    let spec = pod_spec();
    for key in ["hostPID", "hostNetwork", "hostIPC"] {
        assert_ne!(spec.get(key).and_then(Value::as_bool), Some(true), "{key}");
    }
    let seccomp = spec
        .get("securityContext")
        .and_then(|c| c.get("seccompProfile"))
        .and_then(|p| s(p, "type"));
    assert_eq!(seccomp, Some("RuntimeDefault"));
}

#[test]
fn every_container_is_locked_down() {
    let pod_ctx = pod_spec().get("securityContext");
    for c in all_containers() {
        let cname = s(c, "name").unwrap_or("?");
        let ctx = c
            .get("securityContext")
            .unwrap_or_else(|| panic!("{cname}: no securityContext"));
        let flag = |k: &str| ctx.get(k).and_then(Value::as_bool);
        assert_eq!(flag("privileged"), Some(false), "{cname}: privileged");
        assert_eq!(
            flag("allowPrivilegeEscalation"),
            Some(false),
            "{cname}: allowPrivilegeEscalation"
        );
        assert_eq!(
            flag("readOnlyRootFilesystem"),
            Some(true),
            "{cname}: readOnlyRootFilesystem"
        );
        let caps = ctx.get("capabilities").expect("capabilities");
        let drop: Vec<&str> = seq(caps.get("drop"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            drop.contains(&"ALL"),
            "{cname}: capabilities.drop lacks ALL"
        );
        assert!(
            seq(caps.get("add")).is_empty(),
            "{cname}: capabilities.add must be empty"
        );
        let seccomp = ctx
            .get("seccompProfile")
            .and_then(|p| s(p, "type"))
            .or_else(|| {
                pod_ctx
                    .and_then(|p| p.get("seccompProfile"))
                    .and_then(|p| s(p, "type"))
            });
        assert_eq!(seccomp, Some("RuntimeDefault"), "{cname}: seccomp");

        // runAsUser 0 together with runAsNonRoot: true is refused by the kubelet.
        let effective = |k: &str| {
            ctx.get(k)
                .or_else(|| pod_ctx.and_then(|p| p.get(k)))
                .cloned()
        };
        let uid = effective("runAsUser").and_then(|v| v.as_u64());
        let non_root = effective("runAsNonRoot").and_then(|v| v.as_bool());
        if uid == Some(0) {
            assert_ne!(non_root, Some(true), "{cname}: uid 0 with runAsNonRoot");
        }
    }
}

#[test]
fn host_paths_are_exactly_the_allowed_set() {
    let volumes = seq(pod_spec().get("volumes"));
    let mut host_paths = BTreeMap::new();
    for v in volumes {
        if let Some(hp) = v.get("hostPath") {
            let vname = s(v, "name").expect("volume name");
            let path = s(hp, "path").expect("hostPath path");
            let ty = s(hp, "type").unwrap_or("");
            host_paths.insert(path, (vname, ty));
        }
    }
    let paths: BTreeSet<&str> = host_paths.keys().copied().collect();
    assert_eq!(
        paths,
        BTreeSet::from([SOCKET_DIR, EXPORT_DIR, STATE_DIR]),
        "hostPath volumes"
    );
    assert_eq!(host_paths[SOCKET_DIR].1, "Directory");
    assert_eq!(host_paths[EXPORT_DIR].1, "DirectoryOrCreate");
    assert_eq!(host_paths[STATE_DIR].1, "DirectoryOrCreate");

    // Each host directory is mounted at the same path, and only the state
    // directory is writable.
    let mounts = seq(agent().get("volumeMounts"));
    for (path, (vname, _)) in &host_paths {
        let m: Vec<&Value> = mounts
            .iter()
            .filter(|m| s(m, "name") == Some(*vname))
            .collect();
        assert_eq!(m.len(), 1, "{path}: mounted once");
        assert_eq!(s(m[0], "mountPath"), Some(*path), "{path}: mount path");
        assert!(s(m[0], "subPath").is_none(), "{path}: no subPath");
        let read_only = m[0].get("readOnly").and_then(Value::as_bool) == Some(true);
        assert_eq!(read_only, *path != STATE_DIR, "{path}: readOnly");
    }
    // No other container mounts a host path.
    for c in all_containers() {
        if std::ptr::eq(c, agent()) {
            continue;
        }
        for m in seq(c.get("volumeMounts")) {
            let vname = s(m, "name");
            assert!(
                host_paths.values().all(|(n, _)| Some(*n) != vname),
                "{:?} mounts a host path",
                s(c, "name")
            );
        }
    }
}

#[test]
fn every_mount_has_a_volume_and_tmp_is_an_empty_dir() {
    let volumes: BTreeMap<&str, &Value> = seq(pod_spec().get("volumes"))
        .iter()
        .map(|v| (s(v, "name").expect("volume name"), v))
        .collect();
    for c in all_containers() {
        for m in seq(c.get("volumeMounts")) {
            let vname = s(m, "name").expect("mount name");
            assert!(
                volumes.contains_key(vname),
                "mount of unknown volume {vname}"
            );
        }
    }
    let tmp = seq(agent().get("volumeMounts"))
        .iter()
        .find(|m| s(m, "mountPath") == Some("/tmp"))
        .expect("/tmp is mounted (the root filesystem is read-only)");
    let vol = volumes[s(tmp, "name").unwrap()];
    assert!(vol.get("emptyDir").is_some(), "/tmp is an emptyDir");
}

#[test]
fn args_point_into_the_mounts() {
    assert_eq!(args().first(), Some(&"run"));
    let address = arg_value("--tetragon-address");
    let socket = address
        .strip_prefix("unix://")
        .expect("Tetragon is reached over its unix socket");
    assert!(path_within(socket, SOCKET_DIR), "{socket}");
    let db = arg_value("--db");
    assert!(path_within(db, STATE_DIR), "{db}");
    assert_eq!(
        Path::new(db).parent(),
        Some(Path::new(STATE_DIR)),
        "--db is a child of the mount, so quarantine (a rename to a sibling) stays on it"
    );
    assert_eq!(arg_value("--log-format"), "json");
    let export = configmap_data();
    if let Some(log) = export.get("TETRAGON_LEARNER_EXPORT_LOG") {
        assert!(path_within(log, EXPORT_DIR), "{log}");
    }
}

#[test]
fn every_flag_exists_in_the_cli() {
    let help = run_help();
    let flags: Vec<&str> = args()
        .into_iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap())
        .collect();
    assert!(!flags.is_empty());
    for flag in flags {
        let known = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
            .any(|w| w == flag);
        assert!(known, "{flag} is not an option of `tetragon-learner run`");
    }
}

#[test]
fn every_configmap_key_is_an_env_var_of_the_cli() {
    let help = run_help();
    let data = configmap_data();
    assert!(!data.is_empty());
    for key in data.keys() {
        assert!(key.starts_with("TETRAGON_LEARNER_"), "{key}");
        assert!(
            help.contains(&format!("[env: {key}=")),
            "{key} is not read by `tetragon-learner run`"
        );
    }
    // The agent reads it through envFrom.
    let refs: Vec<&str> = seq(agent().get("envFrom"))
        .iter()
        .filter_map(|e| e.get("configMapRef"))
        .filter_map(|r| s(r, "name"))
        .collect();
    assert_eq!(refs, vec![name(the("ConfigMap"))]);
}

/// Starts the agent with the ConfigMap's environment and the DaemonSet's args
/// (host paths moved into a temporary directory): it must get past argument
/// parsing and keep running while Tetragon is absent.
#[test]
fn the_agent_accepts_the_configmap_and_args() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let relocated: Vec<String> = args()
        .iter()
        .map(|a| {
            if *a == "0.0.0.0:9090" {
                return "127.0.0.1:0".to_owned();
            }
            let mut a = (*a).to_owned();
            for host in [SOCKET_DIR, STATE_DIR, ADMIN_DIR] {
                a = a.replace(host, &format!("{root}{host}"));
            }
            a
        })
        .collect();
    // The emptyDir the kubelet would provide.
    std::fs::create_dir_all(format!("{root}{ADMIN_DIR}")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tetragon-learner"))
        .args(&relocated)
        .env_clear()
        .envs(configmap_data())
        .env(
            "TETRAGON_LEARNER_EXPORT_LOG",
            format!("{root}/tetragon.log"),
        )
        .env("NODE_NAME", "test-node")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if exited.is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        exited.is_none(),
        "the agent exited ({:?}) with the deployed settings:\n{}",
        exited,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn probes_use_the_health_endpoints_on_the_metrics_port() {
    let c = agent();
    let ports = seq(c.get("ports"));
    let metrics_port = arg_value("--metrics-address")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u64>().ok())
        .expect("--metrics-address has a port");
    let port = ports
        .iter()
        .find(|p| p.get("containerPort").and_then(Value::as_u64) == Some(metrics_port))
        .expect("the metrics address is a container port");
    let port_name = s(port, "name");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = c
            .get(probe)
            .and_then(|p| p.get("httpGet"))
            .unwrap_or_else(|| panic!("{probe}.httpGet"));
        assert_eq!(s(get, "path"), Some(path), "{probe} path");
        let p = get.get("port").expect("probe port");
        let matches = p.as_u64() == Some(metrics_port) || p.as_str() == port_name;
        assert!(matches, "{probe} port {p:?} is not the metrics port");
    }
    if let Some(startup) = c.get("startupProbe").and_then(|p| p.get("httpGet")) {
        assert_eq!(s(startup, "path"), Some("/healthz"));
    }
}

#[test]
fn resources_are_bounded() {
    let r = agent().get("resources").expect("resources");
    let get = |section: &str, k: &str| {
        r.get(section)
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(get("requests", "cpu").as_deref(), Some("50m"));
    assert_eq!(get("requests", "memory").as_deref(), Some("64Mi"));
    assert_eq!(get("limits", "memory").as_deref(), Some("256Mi"));
}

#[test]
fn scheduling_env_and_shutdown() {
    let spec = pod_spec();
    let tolerates_all = seq(spec.get("tolerations"))
        .iter()
        .any(|t| s(t, "operator") == Some("Exists") && t.get("key").is_none());
    assert!(tolerates_all, "tolerates every taint, like Tetragon");
    assert_eq!(
        spec.get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64),
        Some(30)
    );
    let node_name = seq(agent().get("env"))
        .iter()
        .find(|e| s(e, "name") == Some("NODE_NAME"))
        .and_then(|e| e.get("valueFrom"))
        .and_then(|v| v.get("fieldRef"))
        .and_then(|f| s(f, "fieldPath"));
    assert_eq!(node_name, Some("spec.nodeName"));
}

#[test]
fn service_account_exists_and_has_no_token() {
    let spec = pod_spec();
    let sa_name = s(spec, "serviceAccountName").expect("serviceAccountName");
    let sa = objects("ServiceAccount")
        .into_iter()
        .find(|sa| name(sa) == sa_name)
        .unwrap_or_else(|| panic!("ServiceAccount {sa_name} is not in deploy/"));
    assert_eq!(
        sa.get("automountServiceAccountToken")
            .and_then(Value::as_bool),
        Some(false)
    );
    assert_eq!(
        spec.get("automountServiceAccountToken")
            .and_then(Value::as_bool),
        Some(false)
    );
}

#[test]
fn image_is_pinned() {
    let image = s(agent(), "image").expect("image");
    let tag = image.rsplit_once(':').map(|(_, t)| t);
    assert!(
        image.contains('@') || tag.is_some_and(|t| !t.contains('/') && t != "latest"),
        "pin the image: {image}"
    );
}

#[test]
fn dockerfile_is_non_root_with_pinned_bases() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("deploy/Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let word = |l: &str, kw: &str| -> Option<String> {
        let (first, rest) = l.split_once(char::is_whitespace)?;
        first
            .eq_ignore_ascii_case(kw)
            .then(|| rest.trim().to_owned())
    };

    let mut stages = BTreeSet::new();
    let froms: Vec<String> = lines.iter().filter_map(|l| word(l, "FROM")).collect();
    assert!(froms.len() >= 2, "multi-stage build");
    for from in &froms {
        let mut parts = from.split_whitespace().filter(|p| !p.starts_with("--"));
        let image = parts.next().expect("FROM image");
        if stages.contains(image) {
            continue; // FROM an earlier stage
        }
        let (repo, tag) = match image.split_once('@') {
            Some(_) => (image, None),
            None => {
                let last = image.rsplit('/').next().unwrap();
                (image, last.split_once(':').map(|(_, t)| t))
            }
        };
        if !image.contains('@') {
            let tag = tag.unwrap_or_else(|| panic!("{repo}: no tag (means latest)"));
            assert_ne!(tag, "latest", "{repo}: latest tag");
        }
        if let (Some(kw), Some(alias)) = (parts.next(), parts.next()) {
            if kw.eq_ignore_ascii_case("AS") {
                stages.insert(alias.to_owned());
            }
        }
    }
    assert!(
        froms[0].starts_with("rust:1-bookworm"),
        "builder: {}",
        froms[0]
    );
    assert!(
        text.contains("cargo build --release --locked"),
        "reproducible build from Cargo.lock"
    );

    let users: Vec<String> = lines.iter().filter_map(|l| word(l, "USER")).collect();
    let last = users.last().expect("a USER instruction");
    let user = last.split(':').next().unwrap();
    assert!(
        user != "root" && user != "0" && !user.is_empty(),
        "the image runs as root: USER {last}"
    );
    assert_eq!(user, "65532");

    let entry = lines
        .iter()
        .rev()
        .find_map(|l| word(l, "ENTRYPOINT"))
        .expect("ENTRYPOINT");
    assert_eq!(entry, r#"["/usr/local/bin/tetragon-learner"]"#);
    let cmd = lines.iter().rev().find_map(|l| word(l, "CMD"));
    assert_eq!(cmd.as_deref(), Some(r#"["run"]"#));
}
