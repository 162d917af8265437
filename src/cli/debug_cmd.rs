//! `tetragon-learner debug (list|show KEY|dump|stats|check)`: read a stopped
//! agent's sled database (sled locks its directory, so a running agent's state is
//! read through its admin socket instead). The `render_*` functions are pure and
//! return the exact text printed, so tests need neither the binary nor a terminal.
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use thiserror::Error;

use crate::learner::key::{KeyParseError, LearnerKey};
use crate::learner::profile::{Completeness, ExecutableRecord, Profile};
use crate::learner::state::LearnerState;
use crate::learner::view::ProfileView;
use crate::store::inspect::{self, escape_for_terminal, DbScan, Stats, Table};
use crate::store::{preflight, Store, StoreError};
use crate::time::rfc3339_ms;

#[derive(Debug, Args)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub command: DebugCommand,
    /// The agent's database directory (the agent must be stopped: sled locks it).
    #[arg(long, env = "TETRAGON_LEARNER_DB", global = true)]
    pub db: Option<PathBuf>,
    /// Read a running agent's state through its local admin socket instead.
    #[arg(long, global = true, env = "TETRAGON_LEARNER_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "table",
        env = "TETRAGON_LEARNER_FORMAT"
    )]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DebugCommand {
    /// One line per learner.
    List,
    /// One learner's profile (KEY = NAMESPACE/KIND/WORKLOAD/CONTAINER).
    Show { key: String },
    /// Every profile (JSON: the documented profiles array).
    Dump,
    /// Counts and database size.
    Stats,
    /// Decode every record; exit 1 when any cannot be decoded.
    Check,
    /// What the agent's exported policies denied or would deny, per learner
    /// (all learners with any, or KEY's).
    Violations { key: Option<String> },
    /// The agent's exported policies as Tetragon lists them on this node
    /// (needs --admin-socket: a running agent's live view).
    Policies,
}

#[derive(Debug, Error)]
pub enum DebugError {
    #[error("debug needs --db DIR (or TETRAGON_LEARNER_DB) pointing at a stopped agent's database, or --admin-socket PATH for a running one")]
    NoSource,
    #[error(transparent)]
    Admin(#[from] crate::api::admin_client::AdminClientError),
    #[error("the admin socket answered something that is not a database scan: {0}")]
    AdminAnswer(String),
    #[error("no database at {}: {} (reading never creates one; give the agent's --db directory)", .0.display(), if .0.exists() { "not a directory" } else { "no such directory" })]
    NoDatabase(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyParseError),
    #[error("no learner {key} in database {}; see `debug list` for the keys", path.display())]
    UnknownKey { key: String, path: PathBuf },
    #[error("{bad} of {total} records in database {} cannot be decoded (listed above)", path.display())]
    BadRecords {
        bad: usize,
        total: usize,
        path: PathBuf,
    },
    #[error("JSON output failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// The CLI entry point: prints to stdout, returns an error for exit code 1.
pub fn run(args: DebugArgs) -> anyhow::Result<()> {
    if args.db.is_none() && args.admin_socket.is_none() {
        // A usage error (exit 2), like clap's own: the flags are global, so clap
        // cannot require one of them before it has seen the subcommand's.
        return Err(super::UsageError(DebugError::NoSource.to_string()).into());
    }
    if let DebugCommand::Show { key } | DebugCommand::Violations { key: Some(key) } = &args.command
    {
        LearnerKey::parse(key).map_err(|e| super::UsageError(e.to_string()))?;
    }
    if let DebugCommand::Policies = &args.command {
        let Some(socket) = args.admin_socket.as_deref() else {
            return Err(super::UsageError(
                "debug policies needs --admin-socket PATH: the policies loaded in Tetragon are a running agent's view".into(),
            )
            .into());
        };
        let body = crate::api::admin_client::request(socket, "GET", "/v1/policies")?;
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        print!(
            "{}",
            super::debug_violations::render_policies(&value, args.format)?
        );
        return Ok(());
    }
    let scan = load(args.db.as_deref(), args.admin_socket.as_deref())?;
    let format = args.format;
    if !scan.bad.is_empty() && !matches!(args.command, DebugCommand::Check) {
        eprintln!(
            "warning: {} records cannot be decoded and are not shown; run `debug check`",
            scan.bad.len()
        );
    }
    let out = match &args.command {
        DebugCommand::List => render_list(&scan.profiles, format)?,
        DebugCommand::Show { key } => render_show(&scan, key, format)?,
        DebugCommand::Dump => render_dump(&scan.profiles, format)?,
        DebugCommand::Stats => render_stats(&scan.stats(), format)?,
        DebugCommand::Violations { key } => {
            super::debug_violations::render_violations(&scan.profiles, key.as_deref(), format)?
        }
        DebugCommand::Policies => String::new(),
        DebugCommand::Check => {
            print!("{}", render_check(scan.profiles.len(), &scan.bad, format)?);
            return check_outcome(&scan.path, scan.profiles.len(), scan.bad.len())
                .map_err(Into::into);
        }
    };
    print!("{out}");
    Ok(())
}

/// What `debug` shows: from a running agent's admin socket when given (sled
/// locks a running agent's directory), else from the stopped agent's database.
pub fn load(db: Option<&Path>, admin_socket: Option<&Path>) -> Result<DbScan, DebugError> {
    if let Some(socket) = admin_socket {
        let body = crate::api::admin_client::request(socket, "GET", "/v1/db")?;
        return serde_json::from_slice(&body).map_err(|e| DebugError::AdminAnswer(e.to_string()));
    }
    let store = open_for_debug(db)?;
    Ok(DbScan::read(&store)?)
}

/// Exit status of `check`: an error (exit code 1) when any record is bad.
pub fn check_outcome(path: &Path, good: usize, bad: usize) -> Result<(), DebugError> {
    match bad {
        0 => Ok(()),
        _ => Err(DebugError::BadRecords {
            bad,
            total: good + bad,
            path: path.to_path_buf(),
        }),
    }
}

/// Opens the database a `debug` or `export` command reads. Never creates one:
/// a mistyped `--db` is an error, not a new empty database. Never changes one:
/// what is opened is a private copy, checked first in a child process (see
/// `store::preflight`), so a damaged database is one clear error, not a hang,
/// a panic or a rewritten file.
pub fn open_for_debug(db: Option<&Path>) -> Result<Store, DebugError> {
    let path = db.ok_or(DebugError::NoSource)?;
    if !path.is_dir() {
        return Err(DebugError::NoDatabase(path.to_path_buf()));
    }
    if preflight::is_empty_or_missing(path) {
        return Err(DebugError::Store(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: "the directory is empty".into(),
        }));
    }
    let copy = preflight::copy_database(path, None)?;
    preflight::Checker::current().check(&copy)?;
    Ok(Store::open_copy(copy)?)
}

#[derive(Serialize)]
struct ListEntry<'a> {
    key: &'a LearnerKey,
    id: String,
    state: LearnerState,
    completeness: Completeness,
    ready: bool,
    executables: usize,
    deviations: usize,
    drift_count: u64,
    last_change: String,
    /// Per hook view, executables never seen through it: "ready but N
    /// unverified" for that view's policy shapes.
    unverified: UnverifiedCounts,
    /// Violations not acknowledged.
    violations: usize,
}

#[derive(Serialize)]
struct UnverifiedCounts {
    opened: usize,
    loaded: usize,
}

fn unverified_counts(p: &Profile) -> UnverifiedCounts {
    let u = crate::learner::view::unverified(p.executables.values());
    UnverifiedCounts {
        opened: u.opened.len(),
        loaded: u.loaded.len(),
    }
}

pub fn render_list(profiles: &[Profile], format: Format) -> Result<String, DebugError> {
    if format == Format::Json {
        let entries: Vec<ListEntry<'_>> = profiles
            .iter()
            .map(|p| ListEntry {
                key: &p.key,
                id: p.key.to_string(),
                state: p.state,
                completeness: p.completeness(),
                ready: p.is_ready(),
                executables: p.executables.len(),
                deviations: p.deviations.len(),
                drift_count: p.drift_count,
                last_change: rfc3339_ms(inspect::last_change(p)),
                unverified: unverified_counts(p),
                violations: p.violations.active(),
            })
            .collect();
        return json(&entries);
    }
    let mut t = Table::new(&[
        "KEY",
        "STATE",
        "COMPLETENESS",
        "READY",
        "EXECUTABLES",
        "DEVIATIONS",
        "DRIFT",
        "LAST CHANGE",
        "UNVERIFIED",
        "VIOLATIONS",
    ]);
    for p in profiles {
        let u = unverified_counts(p);
        t.push(&[
            p.key.to_string(),
            p.state.to_string(),
            p.completeness().to_string(),
            yes_no(p.is_ready()).to_string(),
            p.executables.len().to_string(),
            p.deviations.len().to_string(),
            p.drift_count.to_string(),
            rfc3339_ms(inspect::last_change(p)),
            format!("opened {} loaded {}", u.opened, u.loaded),
            p.violations.active().to_string(),
        ]);
    }
    Ok(t.render())
}

/// `show KEY`: looks the key up directly, so one bad record elsewhere does not
/// hide a good profile.
pub fn render_show(scan: &DbScan, key: &str, format: Format) -> Result<String, DebugError> {
    let parsed = LearnerKey::parse(key)?;
    let profile = scan
        .profiles
        .iter()
        .find(|p| p.key == parsed)
        .ok_or_else(|| DebugError::UnknownKey {
            key: escape_for_terminal(key).into_owned(),
            path: scan.path.clone(),
        })?;
    render_profile(profile, format)
}

pub fn render_profile(p: &Profile, format: Format) -> Result<String, DebugError> {
    match format {
        Format::Json => json(&p.to_view()),
        Format::Table => Ok(profile_table(p)),
    }
}

pub fn render_dump(profiles: &[Profile], format: Format) -> Result<String, DebugError> {
    match format {
        Format::Json => json(
            &profiles
                .iter()
                .map(Profile::to_view)
                .collect::<Vec<ProfileView>>(),
        ),
        Format::Table => Ok(profiles
            .iter()
            .map(profile_table)
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

pub fn render_stats(s: &Stats, format: Format) -> Result<String, DebugError> {
    if format == Format::Json {
        return json(s);
    }
    let mut t = Table::new(&["STAT", "VALUE"]);
    t.push(&["schema version".to_string(), s.schema_version.to_string()]);
    t.push(&["learners".to_string(), s.learners.to_string()]);
    for (state, n) in &s.learners_by_state {
        t.push(&[format!("  {state}"), n.to_string()]);
    }
    t.push(&["executables".to_string(), s.executables.to_string()]);
    t.push(&["deviations".to_string(), s.deviations.to_string()]);
    t.push(&[
        "partial learners".to_string(),
        s.partial_learners.to_string(),
    ]);
    t.push(&[
        "size on disk (bytes)".to_string(),
        s.size_on_disk_bytes.to_string(),
    ]);
    Ok(t.render())
}

#[derive(Serialize)]
struct CheckReport<'a> {
    records: usize,
    good: usize,
    bad: Vec<BadRecord<'a>>,
}

#[derive(Serialize)]
struct BadRecord<'a> {
    key: &'a str,
    reason: &'a str,
}

/// `check`: the summary and every bad record (key and reason). The caller turns
/// a non-empty `bad` into exit code 1.
pub fn render_check(
    good: usize,
    bad: &[(String, String)],
    format: Format,
) -> Result<String, DebugError> {
    if format == Format::Json {
        let report = CheckReport {
            records: good + bad.len(),
            good,
            bad: bad
                .iter()
                .map(|(key, reason)| BadRecord { key, reason })
                .collect(),
        };
        return json(&report);
    }
    let mut out = format!(
        "checked {} records: {} good, {} bad\n",
        good + bad.len(),
        good,
        bad.len()
    );
    if !bad.is_empty() {
        let mut t = Table::new(&["BAD KEY", "REASON"]);
        for (key, reason) in bad {
            t.push(&[key, reason]);
        }
        out.push_str(&t.render());
    }
    Ok(out)
}

fn profile_table(p: &Profile) -> String {
    let reasons: Vec<String> = p
        .partial_reasons
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    let completeness = match reasons.is_empty() {
        true => p.completeness().to_string(),
        false => format!("{} ({})", p.completeness(), reasons.join(", ")),
    };
    let mut head = Table::new(&["LEARNER", &p.key.to_string()]);
    head.push(&["state", p.state.as_str()]);
    head.push(&["completeness", &completeness]);
    head.push(&["ready", yes_no(p.is_ready())]);
    for (reason, at) in &p.tracking.healed_at {
        head.push(&[format!("healed {reason}"), rfc3339_ms(*at)]);
    }
    let live = p.tracking.instances.values().filter(|i| i.is_live());
    let from_start = live.clone().filter(|i| i.seen_from_start).count();
    head.push(&[
        "instances".to_string(),
        format!(
            "{} live ({from_start} seen from their start), {} gone",
            live.count(),
            p.tracking.instances.len()
                - p.tracking
                    .instances
                    .values()
                    .filter(|i| i.is_live())
                    .count()
        ),
    ]);
    head.push(&["drift", &p.drift_count.to_string()]);
    let u = unverified_counts(p);
    head.push(&[
        "unverified".to_string(),
        format!(
            "opened {} loaded {} (never seen through that hook view)",
            u.opened, u.loaded
        ),
    ]);
    let acknowledged = p.violations.by_id.len() - p.violations.active();
    head.push(&[
        "violations".to_string(),
        format!(
            "{} active, {acknowledged} acknowledged, {} evicted (see `debug violations`)",
            p.violations.active(),
            p.violations.evicted
        ),
    ]);
    head.push(&["created", &rfc3339_ms(p.created_at)]);
    head.push(&["learning since", &rfc3339_ms(p.learning_since)]);
    head.push(&["last new", &rfc3339_ms(p.last_new_at)]);
    let mut t = Table::new(&[
        "PATH",
        "FIRST SEEN",
        "LAST SEEN",
        "COUNT",
        "SOURCE",
        "MARKS",
    ]);
    let rows = p
        .executables
        .values()
        .map(|r| (r, false))
        .chain(p.deviations.values().map(|r| (r, true)));
    for (rec, deviation) in rows {
        t.push(&[
            rec.path.clone(),
            rfc3339_ms(rec.first_seen),
            rfc3339_ms(rec.last_seen),
            rec.count.to_string(),
            source_name(rec),
            marks(rec, deviation),
        ]);
    }
    format!("{}\n{}", head.render(), t.render())
}

/// READY (complete, and stable or locked; see `Profile::is_ready`).
fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn source_name(rec: &ExecutableRecord) -> String {
    serde_json::to_value(rec.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn marks(rec: &ExecutableRecord, deviation: bool) -> String {
    let marks: Vec<&str> = [
        (deviation, "deviation"),
        (rec.exec_probe, "exec-probe"),
        (rec.exec_session, "exec-session"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if marks.is_empty() {
        "-".to_string()
    } else {
        marks.join(",")
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, DebugError> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}
