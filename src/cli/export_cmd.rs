//! `tetragon-learner export (--db DIR | --admin-socket P | --input FILE...)
//! --format json|proposal|tracingpolicy`: reads a stopped agent's database
//! (like `debug`), a running agent's admin socket, or several nodes' JSON
//! exports (merged, see `export::merge`), and writes the learned profiles as
//! the documented JSON, as `WorkloadPolicyProposal`s or as Tetragon
//! `TracingPolicyNamespaced` allow-lists. `render` is pure and returns the
//! exact text written plus the warnings printed on stderr. Nothing is written
//! unless every input was read and the whole output rendered.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use thiserror::Error;

use crate::export::filter::{in_workloads, WorkloadFilter};
use crate::export::input::{input_name, parse_profiles, InputError};
use crate::export::limits::{self, parse_size, DEFAULT_NODE_CPUS, TETRAGON_MAX_FILTERED_POLICIES};
use crate::export::warnings::{self, Warning};
use crate::export::{
    self, group_by_workload, json, merge, proposal, tracing_policy, ExecKind, ExportError,
    ExportOptions, GroupBy, Limits, PolicyHook, PolicyMode, SelectorMode, DEFAULT_WORKLOAD_LABEL,
};
use crate::export::{selection_warnings, view_warnings, Skip};
use crate::learner::profile::Profile;
use crate::store::inspect::escape_for_terminal;
use crate::store::StoreError;

use super::debug_cmd::{open_for_debug, DebugError};
use super::UsageError;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The agent's database directory (the agent must be stopped: sled locks it).
    #[arg(
        long,
        env = "TETRAGON_LEARNER_DB",
        required_unless_present_any = ["admin_socket", "input"]
    )]
    pub db: Option<PathBuf>,
    /// Export from a running agent through its admin socket instead (what is durable).
    #[arg(long, env = "TETRAGON_LEARNER_ADMIN_SOCKET", conflicts_with = "db")]
    pub admin_socket: Option<PathBuf>,
    /// Merge the profiles of these `export --format json` files (one per node;
    /// repeatable, or several after one --input; `-` is stdin) instead of
    /// reading a database.
    #[arg(
        long,
        value_name = "FILE",
        num_args = 1..,
        env = "TETRAGON_LEARNER_EXPORT_INPUT",
        conflicts_with_all = ["db", "admin_socket"]
    )]
    pub input: Vec<String>,
    /// json: the documented profiles array; proposal: WorkloadPolicyProposal
    /// YAML; tracingpolicy: Tetragon TracingPolicyNamespaced YAML (host
    /// learners: cluster-scoped TracingPolicy).
    #[arg(long, value_enum, env = "TETRAGON_LEARNER_EXPORT_FORMAT")]
    pub format: ExportFormat,
    /// Write to FILE (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE", env = "TETRAGON_LEARNER_EXPORT_OUTPUT")]
    pub output: Option<PathBuf>,
    /// Export only this namespace's learners.
    #[arg(long, value_name = "NS", env = "TETRAGON_LEARNER_EXPORT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Export only this workload of --namespace (KIND/NAME, e.g. Deployment/web;
    /// repeatable).
    #[arg(
        long,
        value_name = "KIND/NAME",
        env = "TETRAGON_LEARNER_EXPORT_WORKLOAD",
        value_delimiter = ',',
        requires = "namespace"
    )]
    pub workload: Vec<WorkloadFilter>,
    /// tracingpolicy: Tetragon policy mode. monitor reports what would be
    /// denied; enforce denies it. Switch a loaded policy with
    /// `tetra tracingpolicy set-mode`.
    #[arg(
        long,
        value_enum,
        env = "TETRAGON_LEARNER_EXPORT_MODE",
        default_value = "monitor"
    )]
    pub mode: PolicyMode,
    /// tracingpolicy: kprobe (security_bprm_creds_for_exec + Override; needs
    /// CONFIG_BPF_KPROBE_OVERRIDE), lsm (BPF-LSM bprm_creds_for_exec; needs a
    /// kernel booted with lsm=...,bpf), or tracepoint (raw
    /// sched_process_exec + Sigkill: any kernel; exit 137 instead of EPERM,
    /// a script is checked by its interpreter).
    #[arg(
        long,
        value_enum,
        env = "TETRAGON_LEARNER_EXPORT_HOOK",
        default_value = "kprobe"
    )]
    pub hook: PolicyHook,
    /// Leave out executables only ever seen as exec probes (liveness/readiness).
    /// By default they are allowed: a denied probe restarts the pod.
    #[arg(long, env = "TETRAGON_LEARNER_EXPORT_EXCLUDE_EXEC_PROBES")]
    pub exclude_exec_probes: bool,
    /// Old flag: exec probes are allowed by default now. Accepted and ignored.
    #[arg(
        long,
        hide = true,
        env = "TETRAGON_LEARNER_EXPORT_INCLUDE_EXEC_PROBES",
        conflicts_with = "exclude_exec_probes"
    )]
    pub include_exec_probes: bool,
    /// Allow executables only ever seen in `kubectl exec` sessions. Without it,
    /// interactive sessions running them are denied under enforcement.
    #[arg(long, env = "TETRAGON_LEARNER_EXPORT_INCLUDE_EXEC_SESSIONS")]
    pub include_exec_sessions: bool,
    /// How objects select a workload's pods. learned: the fewest labels its
    /// pods carried and no other learned workload's pods of the namespace did
    /// (no relabelling; workloads without such labels fall back to
    /// --workload-label, and stderr says which); workload-label: always
    /// {--workload-label: <workload>}, which pod templates must carry.
    #[arg(
        long,
        value_enum,
        env = "TETRAGON_LEARNER_EXPORT_SELECTOR",
        default_value = "learned"
    )]
    pub selector: SelectorMode,
    /// Pod label key of the workload-label selector (--selector
    /// workload-label, and learned selectors' fallback), with the workload
    /// name as value; the workload's pod template must carry it.
    #[arg(
        long,
        value_name = "KEY",
        env = "TETRAGON_LEARNER_EXPORT_WORKLOAD_LABEL",
        default_value = DEFAULT_WORKLOAD_LABEL
    )]
    pub workload_label: String,
    /// tracingpolicy: one policy per workload (its own list), or one per
    /// namespace (the union of its workloads' lists: fewer policies, looser
    /// lists; stderr says what each workload gains).
    #[arg(
        long,
        value_enum,
        env = "TETRAGON_LEARNER_EXPORT_GROUP",
        default_value = "workload"
    )]
    pub group: GroupBy,
    /// tracingpolicy: CPUs per node, for the kernel memory estimate.
    #[arg(
        long,
        value_name = "N",
        env = "TETRAGON_LEARNER_EXPORT_NODE_CPUS",
        default_value_t = DEFAULT_NODE_CPUS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub node_cpus: u32,
    /// tracingpolicy: warn above this many policies with pod selectors (every
    /// node loads them all; Tetragon keeps at most 128).
    #[arg(
        long,
        value_name = "N",
        env = "TETRAGON_LEARNER_EXPORT_MAX_POLICIES",
        default_value_t = TETRAGON_MAX_FILTERED_POLICIES
    )]
    pub max_policies: usize,
    /// tracingpolicy: warn when the policies' estimated kernel memory per
    /// node exceeds SIZE (e.g. 256MiB, 1GiB).
    #[arg(
        long,
        value_name = "SIZE",
        env = "TETRAGON_LEARNER_EXPORT_KERNEL_MEMORY_BUDGET",
        default_value = "256MiB",
        value_parser = parse_size
    )]
    pub kernel_memory_budget: u64,
    /// List the learners, executables and workloads behind each warning (one
    /// summary line each without it).
    #[arg(short, long, env = "TETRAGON_LEARNER_EXPORT_VERBOSE")]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Json,
    Proposal,
    #[value(name = "tracingpolicy")]
    TracingPolicy,
}

#[derive(Debug, Error)]
pub enum ExportCmdError {
    #[error(transparent)]
    Open(#[from] DebugError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("reading {name} failed: {reason}; check that it exists and is readable")]
    Read { name: String, reason: String },
    #[error("writing the export to {} failed: {reason}; check that the directory exists and is writable", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("writing the export to stdout failed: {0}")]
    Stdout(std::io::Error),
}

/// What one export produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The exact text written.
    pub text: String,
    /// Profiles (json) or Kubernetes objects (proposal, tracingpolicy) in it.
    pub objects: usize,
    /// For stderr: a summary each, details under `--verbose` (not yet
    /// escaped for a terminal).
    pub warnings: Vec<Warning>,
    /// For stderr, after the warnings, as `info: ` lines: what the export
    /// costs (tracing policies).
    pub notes: Vec<String>,
}

impl Rendered {
    /// The stderr lines, in order (not yet escaped): `warning: ` and each
    /// summary, with `verbose` followed by its indented details.
    pub fn stderr_lines(&self, verbose: bool) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.warnings {
            let mut lines = w.lines(verbose).into_iter();
            out.extend(lines.next().map(|summary| format!("warning: {summary}")));
            out.extend(lines);
        }
        out.extend(self.notes.iter().map(|n| format!("info: {n}")));
        out
    }
}

/// The export of `profiles` (already filtered by namespace) in `format`.
pub fn render(
    profiles: &[Profile],
    format: ExportFormat,
    opts: &ExportOptions,
) -> Result<Rendered, ExportError> {
    render_in(profiles, profiles, format, opts)
}

/// [`render`] of `profiles`, a selection (`--workload`) of `context` (the
/// namespace's profiles): learned selectors are told apart from every
/// workload of `context`.
pub fn render_in(
    context: &[Profile],
    profiles: &[Profile],
    format: ExportFormat,
    opts: &ExportOptions,
) -> Result<Rendered, ExportError> {
    let mut warnings = Vec::new();
    if profiles.is_empty() {
        warnings.push(Warning::line("no learner profiles to export"));
    }
    if format == ExportFormat::Json {
        return Ok(Rendered {
            text: json::render(profiles)?,
            objects: profiles.len(),
            warnings,
            notes: Vec::new(),
        });
    }
    let (workloads, mut skipped) = group_by_workload(profiles);
    let mut exported: Vec<&Profile> = workloads.iter().flat_map(|w| w.profiles.clone()).collect();
    // Tracing policies hold host learners too (cluster-scoped); proposals not.
    let hosts: Vec<&Profile> = match format {
        ExportFormat::TracingPolicy => skipped
            .iter()
            .filter(|(_, s)| *s == Skip::Host)
            .map(|(p, _)| *p)
            .collect(),
        _ => Vec::new(),
    };
    if !hosts.is_empty() {
        skipped.retain(|(_, s)| *s != Skip::Host);
        exported.extend(hosts.iter().copied());
    }
    warnings.extend(warnings::not_ready(&exported));
    warnings.extend(warnings::left_out(profiles, opts, ExecKind::ProbeOnly));
    warnings.extend(warnings::left_out(profiles, opts, ExecKind::SessionOnly));
    warnings.extend(warnings::not_namespaced(&skipped));
    let mut notes = Vec::new();
    let (text, objects) = match format {
        ExportFormat::Proposal => {
            let objs = proposal::proposals_in(context, profiles, opts)?;
            let (all, _) = group_by_workload(context);
            let mut choices = export::k8s::selector_choices(&all, opts);
            choices.retain(|id, _| workloads.iter().any(|w| w.id == *id));
            warnings.extend(selection_warnings::selector_fallbacks(
                &choices,
                &opts.workload_label,
            ));
            (export::to_yaml_documents(&objs)?, objs.len())
        }
        _ => {
            let out = tracing_policy::policies_in(context, profiles, opts)?;
            warnings.extend(view_warnings::unverified_executables(&exported, opts));
            warnings.extend(view_warnings::fileless(&exported, opts));
            warnings.extend(view_warnings::host_policies(&hosts));
            warnings.extend(warnings::no_policy(&out.empty));
            warnings.extend(selection_warnings::selector_fallbacks(
                &out.choices,
                &opts.workload_label,
            ));
            warnings.extend(selection_warnings::gains(&out.gains));
            warnings.extend(selection_warnings::whole_namespace(&out.whole_namespace));
            let cost = limits::cost(&out.policies, opts.hook, &opts.limits);
            warnings.extend(cost.warnings(&opts.limits));
            notes.push(cost.line(opts.hook, &opts.limits));
            (
                export::to_yaml_documents(&out.policies)?,
                out.policies.len(),
            )
        }
    };
    Ok(Rendered {
        text,
        objects,
        warnings,
        notes,
    })
}

/// Reads and merges every `--input` (`-` is stdin). Any unreadable or
/// malformed input fails the whole export, naming that input.
pub fn read_inputs(inputs: &[String]) -> Result<Vec<Profile>, ExportCmdError> {
    let mut nodes = Vec::with_capacity(inputs.len());
    for arg in inputs {
        let name = input_name(arg);
        let text = if arg == "-" {
            let mut text = String::new();
            std::io::stdin()
                .lock()
                .read_to_string(&mut text)
                .map(|_| text)
        } else {
            std::fs::read_to_string(arg)
        }
        .map_err(|e| ExportCmdError::Read {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        nodes.push(parse_profiles(&name, &text)?);
    }
    Ok(merge::merge(nodes))
}

/// The profiles to export and the number of undecodable records skipped.
fn load(args: &ExportArgs) -> anyhow::Result<(Vec<Profile>, usize)> {
    if !args.input.is_empty() {
        return Ok((read_inputs(&args.input)?, 0));
    }
    if let Some(socket) = &args.admin_socket {
        let scan = super::debug_cmd::load(None, Some(socket)).map_err(ExportCmdError::from)?;
        return Ok((scan.profiles, scan.bad.len()));
    }
    let store = match open_for_debug(args.db.as_deref()) {
        Err(DebugError::Store(StoreError::Locked { path })) => {
            anyhow::bail!(
                "database {} is locked by a running agent; export from it with --admin-socket PATH, or stop the agent and run export again",
                path.display()
            )
        }
        other => other.map_err(ExportCmdError::from)?,
    };
    let (profiles, bad) = store.scan().map_err(ExportCmdError::from)?;
    drop(store);
    Ok((profiles, bad.len()))
}

/// The CLI entry point: writes the export, warnings on stderr; an error is
/// exit code 1 (2 for a usage mistake) and leaves `--output` untouched.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if args.input.iter().filter(|i| *i == "-").count() > 1 {
        return Err(UsageError("--input - (stdin) can be given only once".into()).into());
    }
    if args.include_exec_probes {
        eprintln!("warning: --include-exec-probes is the default now and does nothing; use --exclude-exec-probes to leave exec probes out");
    }
    if args.group == GroupBy::Namespace && args.format != ExportFormat::TracingPolicy {
        return Err(UsageError(
            "--group namespace applies to --format tracingpolicy only (proposals are per workload)"
                .into(),
        )
        .into());
    }
    if args.group == GroupBy::Namespace && !args.workload.is_empty() {
        return Err(UsageError(
            "--group namespace writes one policy for every workload of a namespace: use --namespace without --workload"
                .into(),
        )
        .into());
    }
    let opts = ExportOptions {
        exclude_exec_probes: args.exclude_exec_probes,
        include_exec_sessions: args.include_exec_sessions,
        workload_label: args.workload_label.clone(),
        mode: args.mode,
        hook: args.hook,
        selector: args.selector,
        group: args.group,
        limits: Limits {
            node_cpus: args.node_cpus,
            max_policies: args.max_policies,
            kernel_memory_budget: args.kernel_memory_budget,
        },
    };
    let (profiles, bad) = load(&args)?;
    if bad > 0 {
        eprintln!(
            "warning: {bad} records cannot be decoded and are not exported; run `debug check`"
        );
    }
    let context = export::in_namespace(profiles, args.namespace.as_deref());
    let (profiles, unmatched) = in_workloads(context.clone(), &args.workload);
    for f in unmatched {
        eprintln!(
            "warning: no learner of {} in namespace {}; see `debug list` for the learned workloads",
            escape_for_terminal(&f.to_string()),
            escape_for_terminal(args.namespace.as_deref().unwrap_or_default())
        );
    }
    let rendered =
        render_in(&context, &profiles, args.format, &opts).map_err(ExportCmdError::from)?;
    for line in rendered.stderr_lines(args.verbose) {
        eprintln!("{}", escape_for_terminal(&line));
    }
    match &args.output {
        Some(path) => write_file(path, &rendered.text)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(rendered.text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(ExportCmdError::Stdout)?;
        }
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file in the same directory, so
/// a reader never sees half a policy.
pub fn write_file(path: &Path, text: &str) -> Result<(), ExportCmdError> {
    let fail = |reason: String| ExportCmdError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| fail(e.to_string()))?;
    // The error of a failed rename names the temporary file; say what it is about.
    tmp.persist(path).map_err(|e| {
        fail(format!(
            "cannot move the finished file into place: {}",
            e.error.kind()
        ))
    })?;
    Ok(())
}
