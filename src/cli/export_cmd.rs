//! `tetragon-learner export --db DIR --format json|proposal|tracingpolicy`:
//! reads a stopped agent's database (like `debug`) and writes the learned
//! profiles as the documented JSON, as `WorkloadPolicyProposal`s or as Tetragon
//! `TracingPolicyNamespaced` allow-lists. `render` is pure and returns the exact
//! text written plus the warnings printed on stderr.
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use thiserror::Error;

use crate::export::{
    self, group_by_workload, json, partial_warning, proposal, tracing_policy, ExportError,
    ExportOptions, Skip, DEFAULT_WORKLOAD_LABEL,
};
use crate::learner::profile::Profile;
use crate::store::inspect::escape_for_terminal;
use crate::store::StoreError;

use super::debug_cmd::{open_for_debug, DebugError};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The agent's database directory (the agent must be stopped: sled locks it).
    #[arg(
        long,
        env = "TETRAGON_LEARNER_DB",
        required_unless_present = "admin_socket"
    )]
    pub db: Option<PathBuf>,
    /// Export from a running agent through its admin socket instead (what is durable).
    #[arg(long, env = "TETRAGON_LEARNER_ADMIN_SOCKET", conflicts_with = "db")]
    pub admin_socket: Option<PathBuf>,
    /// json: the documented profiles array; proposal: WorkloadPolicyProposal
    /// YAML; tracingpolicy: Tetragon TracingPolicyNamespaced YAML.
    #[arg(long, value_enum, env = "TETRAGON_LEARNER_EXPORT_FORMAT")]
    pub format: ExportFormat,
    /// Write to FILE (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE", env = "TETRAGON_LEARNER_EXPORT_OUTPUT")]
    pub output: Option<PathBuf>,
    /// Export only this namespace's learners.
    #[arg(long, value_name = "NS", env = "TETRAGON_LEARNER_EXPORT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Allow executables only ever seen as exec probes (liveness/readiness).
    #[arg(long, env = "TETRAGON_LEARNER_EXPORT_INCLUDE_EXEC_PROBES")]
    pub include_exec_probes: bool,
    /// Allow executables only ever seen outside the init tree (`kubectl exec`).
    #[arg(long, env = "TETRAGON_LEARNER_EXPORT_INCLUDE_EXEC_SESSIONS")]
    pub include_exec_sessions: bool,
    /// Pod label key the generated selectors match, with the workload name as
    /// value; the workload's pod template must carry it.
    #[arg(
        long,
        value_name = "KEY",
        env = "TETRAGON_LEARNER_EXPORT_WORKLOAD_LABEL",
        default_value = DEFAULT_WORKLOAD_LABEL
    )]
    pub workload_label: String,
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
    /// One line each, for stderr (not yet escaped for a terminal).
    pub warnings: Vec<String>,
}

/// The export of `profiles` (already filtered by namespace) in `format`.
pub fn render(
    profiles: &[Profile],
    format: ExportFormat,
    opts: &ExportOptions,
) -> Result<Rendered, ExportError> {
    let mut warnings = Vec::new();
    if profiles.is_empty() {
        warnings.push("no learner profiles to export".to_string());
    }
    if format == ExportFormat::Json {
        return Ok(Rendered {
            text: json::render(profiles)?,
            objects: profiles.len(),
            warnings,
        });
    }
    warnings.extend(profiles.iter().filter_map(partial_warning));
    let left_out: Vec<String> = profiles
        .iter()
        .flat_map(|p| {
            p.executables
                .values()
                .filter(|r| !opts.keeps(r))
                .map(move |r| format!("{} {}", p.key, r.path))
        })
        .collect();
    if !left_out.is_empty() {
        warnings.push(format!(
            "{} executables seen only as exec probes or exec sessions are left out of the allow-lists (liveness/readiness probes that run them would be denied): {}; add --include-exec-probes / --include-exec-sessions to keep them",
            left_out.len(),
            left_out.join(", ")
        ));
    }
    let (_, skipped) = group_by_workload(profiles);
    for (p, why) in skipped {
        let why = match why {
            Skip::Host => "host processes belong to no namespace",
            Skip::NoNamespace => "it has no namespace",
        };
        warnings.push(format!(
            "learner {} is not exported as a namespaced object: {why}",
            p.key
        ));
    }
    let (text, objects) = match format {
        ExportFormat::Proposal => {
            let objs = proposal::proposals(profiles, opts)?;
            (export::to_yaml_documents(&objs)?, objs.len())
        }
        _ => {
            let out = tracing_policy::policies(profiles, opts)?;
            for id in &out.empty {
                warnings.push(format!(
                    "no TracingPolicyNamespaced for {} {}/{}: nothing exportable in its allow-list (enforcing an empty one would deny every exec); see --include-exec-probes / --include-exec-sessions",
                    id.kind, id.namespace, id.workload
                ));
            }
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
    })
}

/// The CLI entry point: writes the export, warnings on stderr; an error is
/// exit code 1.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let opts = ExportOptions {
        include_exec_probes: args.include_exec_probes,
        include_exec_sessions: args.include_exec_sessions,
        workload_label: args.workload_label.clone(),
    };
    let (profiles, bad) = match (&args.admin_socket, &args.db) {
        (Some(socket), _) => {
            let scan = super::debug_cmd::load(None, Some(socket)).map_err(ExportCmdError::from)?;
            (scan.profiles, scan.bad)
        }
        (None, db) => {
            let store = match open_for_debug(db.as_deref()) {
                Err(super::debug_cmd::DebugError::Store(crate::store::StoreError::Locked {
                    path,
                })) => {
                    anyhow::bail!(
                        "database {} is locked by a running agent; export from it with --admin-socket PATH, or stop the agent and run export again",
                        path.display()
                    )
                }
                other => other.map_err(ExportCmdError::from)?,
            };
            let scanned = store.scan().map_err(ExportCmdError::from)?;
            drop(store);
            scanned
        }
    };
    if !bad.is_empty() {
        eprintln!(
            "warning: {} records cannot be decoded and are not exported; run `debug check`",
            bad.len()
        );
    }
    let profiles = export::in_namespace(profiles, args.namespace.as_deref());
    let rendered = render(&profiles, args.format, &opts).map_err(ExportCmdError::from)?;
    for w in &rendered.warnings {
        eprintln!("warning: {}", escape_for_terminal(w));
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
