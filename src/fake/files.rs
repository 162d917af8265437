//! The fake node's files: per container (and the host) a table of symlinks and
//! `#!` scripts, from which an exec's three paths follow as on Linux with
//! Tetragon (facts in `tests/fixtures/real/hook-events/README.md`):
//! - `binary` (process_exec): the execve path made absolute with the cwd, not
//!   resolved (Go's `filepath.Join(cwd, path)` for a relative path, the path
//!   verbatim when absolute);
//! - `opened` (kprobe `security_bprm_creds_for_exec`, LSM `bprm_creds_for_exec`):
//!   that path with every symlink resolved; a script is itself;
//! - `loaded` (raw tracepoint `sched_process_exec`, `/proc/PID/exe`): the file
//!   finally loaded, i.e. a script's interpreter, resolved.
//!
//! A path the table does not name is a plain file (or directory), so a
//! scenario without files behaves as before.
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Linux gives up after 40 symlinks in one lookup (`ELOOP`).
const MAX_LINKS: usize = 40;
/// Linux runs at most this many nested interpreters (`BINPRM_MAX_RECURSION`).
const MAX_INTERPRETERS: usize = 4;

/// One entry of a file table. YAML: `{link: TARGET}`, `{script: "INTERPRETER
/// [ARG]"}` or `binary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFile", into = "RawFile")]
pub enum FileSpec {
    /// A symlink; a relative target is relative to the link's directory.
    Link(String),
    /// A script; the value is its `#!` line without `#!`: the interpreter and
    /// at most one optional argument (`/usr/bin/env python3`).
    Script(String),
    /// A plain executable (the same as leaving the path out).
    Binary,
}

/// How an entry is written (serde_yaml wants tags for enums).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawFile {
    Word(String),
    Map(RawMap),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    script: Option<String>,
}

impl TryFrom<RawFile> for FileSpec {
    type Error = String;
    fn try_from(raw: RawFile) -> Result<Self, String> {
        match raw {
            RawFile::Word(w) if w == "binary" => Ok(FileSpec::Binary),
            RawFile::Map(RawMap {
                link: Some(l),
                script: None,
            }) => Ok(FileSpec::Link(l)),
            RawFile::Map(RawMap {
                link: None,
                script: Some(s),
            }) => Ok(FileSpec::Script(s)),
            _ => Err("a file is `binary`, `{link: TARGET}` or `{script: INTERPRETER}`".into()),
        }
    }
}

impl From<FileSpec> for RawFile {
    fn from(f: FileSpec) -> RawFile {
        match f {
            FileSpec::Binary => RawFile::Word("binary".into()),
            FileSpec::Link(l) => RawFile::Map(RawMap {
                link: Some(l),
                script: None,
            }),
            FileSpec::Script(s) => RawFile::Map(RawMap {
                link: None,
                script: Some(s),
            }),
        }
    }
}

/// Absolute path (normalized as Go's `filepath.Clean`) -> entry.
pub type FileTable = BTreeMap<String, FileSpec>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileError {
    #[error("too many levels of symbolic links resolving {0:?}")]
    Loop(String),
    #[error("too many levels of #! interpreters executing {0:?}")]
    Interpreters(String),
    #[error("file table key {0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("script {0:?} has an empty #! line")]
    EmptyShebang(String),
}

/// What one execve of `path` in `cwd` shows to Tetragon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFiles {
    /// process_exec `binary`: the path as executed, made absolute.
    pub binary: String,
    /// The file the exec opened (kprobe/LSM `bprm_creds_for_exec`).
    pub opened: String,
    /// The file loaded in the end (raw `sched_process_exec`, `/proc/PID/exe`).
    pub loaded: String,
    /// Every file `security_bprm_check` sees, in order: the opened file, then
    /// each interpreter (resolved).
    pub checked: Vec<String>,
    /// What the kernel puts before the caller's arguments for a script
    /// (optional interpreter argument, then the script path as passed), so
    /// Tetragon's `arguments` (argv without argv[0]) start with them.
    pub argv_prefix: Vec<String>,
}

impl ExecFiles {
    /// Tetragon's `arguments` for this exec given the caller's arguments.
    pub fn arguments(&self, args: &str) -> String {
        let mut parts: Vec<&str> = self.argv_prefix.iter().map(String::as_str).collect();
        if !args.is_empty() {
            parts.push(args);
        }
        parts.join(" ")
    }
}

/// Go's `filepath.Clean` on a slash path.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// process_exec `binary`: Tetragon's `GetBinaryAbsolutePath` (absolute paths
/// verbatim, relative ones joined to the cwd and cleaned).
pub fn exec_binary(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        clean(&format!("{cwd}/{path}"))
    }
}

/// The path with every symlink resolved, as the kernel's lookup does (`..`
/// after a symlink goes up from where the link pointed).
pub fn resolve(table: &FileTable, cwd: &str, path: &str) -> Result<String, FileError> {
    let start = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let mut pending: VecDeque<String> = start.split('/').map(str::to_string).collect();
    let mut out: Vec<String> = Vec::new();
    let mut links = 0usize;
    while let Some(c) = pending.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                out.pop();
                continue;
            }
            _ => out.push(c),
        }
        let here = format!("/{}", out.join("/"));
        if let Some(FileSpec::Link(target)) = table.get(&here) {
            links += 1;
            if links > MAX_LINKS {
                return Err(FileError::Loop(path.to_string()));
            }
            out.pop();
            if target.starts_with('/') {
                out.clear();
            }
            for part in target.split('/').rev() {
                pending.push_front(part.to_string());
            }
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Interpreter and optional argument of a `#!` line, split as Linux does (at
/// the first blank; the rest, trimmed, is one argument).
fn shebang(line: &str) -> Option<(String, Option<String>)> {
    let line = line.trim();
    let (interp, rest) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    (!interp.is_empty()).then(|| {
        (
            interp.to_string(),
            (!rest.is_empty()).then(|| rest.to_string()),
        )
    })
}

/// The paths one execve of `path` (as passed) in `cwd` shows.
pub fn exec_files(table: &FileTable, cwd: &str, path: &str) -> Result<ExecFiles, FileError> {
    let binary = exec_binary(cwd, path);
    let opened = resolve(table, cwd, path)?;
    let mut checked = vec![opened.clone()];
    let mut argv_prefix: Vec<String> = Vec::new();
    let mut current = opened.clone();
    let mut passed = path.to_string();
    for _ in 0..=MAX_INTERPRETERS {
        let Some(FileSpec::Script(line)) = table.get(&current) else {
            return Ok(ExecFiles {
                binary,
                opened,
                loaded: current,
                checked,
                argv_prefix,
            });
        };
        let (interp, arg) =
            shebang(line).ok_or_else(|| FileError::EmptyShebang(current.clone()))?;
        // argv becomes: interpreter, [arg], the path as passed, the rest.
        let mut prefix: Vec<String> = arg.into_iter().collect();
        prefix.push(passed);
        prefix.append(&mut argv_prefix);
        argv_prefix = prefix;
        current = resolve(table, cwd, &interp)?;
        checked.push(current.clone());
        passed = interp;
    }
    Err(FileError::Interpreters(path.to_string()))
}

/// As [`exec_files`], a path that cannot be resolved (a symlink loop the
/// scenario check did not see, e.g. from a test's `exec_in`) counting as a
/// plain file.
pub fn exec_files_or_plain(table: &FileTable, cwd: &str, path: &str) -> ExecFiles {
    let plain = path.starts_with('/') && !path.contains("//") && !path.contains("/.");
    let resolved = if table.is_empty() && plain {
        None // a clean path and no links: skip the walk
    } else {
        exec_files(table, cwd, path).ok()
    };
    resolved.unwrap_or_else(|| {
        let binary = exec_binary(cwd, path);
        ExecFiles {
            opened: binary.clone(),
            loaded: binary.clone(),
            checked: vec![binary.clone()],
            binary,
            argv_prefix: Vec::new(),
        }
    })
}

/// Checks a scenario's table: absolute keys. Returns it with keys cleaned.
pub fn normalized(table: &FileTable) -> Result<FileTable, FileError> {
    table
        .iter()
        .map(|(k, v)| {
            if !k.starts_with('/') {
                return Err(FileError::NotAbsolute(k.clone()));
            }
            if let FileSpec::Script(line) = v {
                shebang(line).ok_or_else(|| FileError::EmptyShebang(k.clone()))?;
            }
            Ok((clean(k), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VM of the real captures: `/bin/sh -> /bin/busybox`, `/t/echo ->
    /// busybox`, `/t/x.sh` a `#!/bin/sh` script, `/t/sl.sh -> x.sh`.
    fn vm() -> FileTable {
        FileTable::from([
            ("/bin/sh".into(), FileSpec::Link("/bin/busybox".into())),
            ("/t/echo".into(), FileSpec::Link("busybox".into())),
            ("/t/x.sh".into(), FileSpec::Script("/bin/sh".into())),
            ("/t/sl.sh".into(), FileSpec::Link("x.sh".into())),
        ])
    }

    /// The host of the real captures (Debian 12): `/bin -> usr/bin`, `sh -> dash`.
    fn debian() -> FileTable {
        FileTable::from([
            ("/bin".into(), FileSpec::Link("usr/bin".into())),
            ("/usr/bin/sh".into(), FileSpec::Link("dash".into())),
            ("/opt/enf/x.sh".into(), FileSpec::Script("/bin/sh".into())),
        ])
    }

    fn paths(t: &FileTable, cwd: &str, p: &str) -> (String, String, String) {
        let f = exec_files(t, cwd, p).unwrap();
        (f.binary, f.opened, f.loaded)
    }

    fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn the_vm_table_of_the_real_captures() {
        let t = vm();
        assert_eq!(
            paths(&t, "/", "/t/busybox"),
            s("/t/busybox", "/t/busybox", "/t/busybox")
        );
        assert_eq!(
            paths(&t, "/", "/t/echo"),
            s("/t/echo", "/t/busybox", "/t/busybox")
        );
        assert_eq!(
            paths(&t, "/", "/bin/sh"),
            s("/bin/sh", "/bin/busybox", "/bin/busybox")
        );
        assert_eq!(
            paths(&t, "/", "/t/x.sh"),
            s("/t/x.sh", "/t/x.sh", "/bin/busybox")
        );
        assert_eq!(
            paths(&t, "/t", "./x.sh"),
            s("/t/x.sh", "/t/x.sh", "/bin/busybox")
        );
        assert_eq!(
            paths(&t, "/", "/t/sl.sh"),
            s("/t/sl.sh", "/t/x.sh", "/bin/busybox")
        );
        let f = exec_files(&t, "/t", "./x.sh").unwrap();
        assert_eq!(f.checked, vec!["/t/x.sh", "/bin/busybox"]);
        assert_eq!(f.arguments("rel"), "./x.sh rel");
    }

    #[test]
    fn the_debian_host_of_the_real_captures() {
        let t = debian();
        assert_eq!(
            paths(&t, "/", "/bin/sh"),
            s("/bin/sh", "/usr/bin/dash", "/usr/bin/dash")
        );
        assert_eq!(
            paths(&t, "/opt/enf", "./x.sh"),
            s("/opt/enf/x.sh", "/opt/enf/x.sh", "/usr/bin/dash")
        );
        assert_eq!(
            paths(&t, "/", "/usr/bin/id"),
            s("/usr/bin/id", "/usr/bin/id", "/usr/bin/id")
        );
    }

    #[test]
    fn binary_is_joined_and_cleaned_only_when_relative() {
        assert_eq!(exec_binary("/opt/enf", "./x.sh"), "/opt/enf/x.sh");
        assert_eq!(exec_binary("/a/b", "../c//d"), "/a/c/d");
        assert_eq!(exec_binary("/", "/usr//bin/./x"), "/usr//bin/./x");
    }

    #[test]
    fn dotdot_after_a_symlink_is_physical() {
        let t = FileTable::from([("/l".into(), FileSpec::Link("/a/b".into()))]);
        assert_eq!(resolve(&t, "/", "/l/../x").unwrap(), "/a/x");
        assert_eq!(clean("/l/../x"), "/x");
    }

    #[test]
    fn loops_and_deep_interpreters_fail() {
        let t = FileTable::from([
            ("/a".into(), FileSpec::Link("/b".into())),
            ("/b".into(), FileSpec::Link("/a".into())),
        ]);
        assert!(matches!(resolve(&t, "/", "/a"), Err(FileError::Loop(_))));
        let t: FileTable = (0..6)
            .map(|i| (format!("/s{i}"), FileSpec::Script(format!("/s{}", i + 1))))
            .collect();
        assert!(matches!(
            exec_files(&t, "/", "/s0"),
            Err(FileError::Interpreters(_))
        ));
    }

    #[test]
    fn shebang_argument_and_env() {
        let t = FileTable::from([(
            "/app/run.py".into(),
            FileSpec::Script("/usr/bin/env  python3 ".into()),
        )]);
        let f = exec_files(&t, "/app", "run.py").unwrap();
        assert_eq!(f.loaded, "/usr/bin/env");
        assert_eq!(f.arguments("-v"), "python3 run.py -v");
    }

    #[test]
    fn a_table_parses_from_yaml_and_is_checked() {
        let t: FileTable =
            serde_yaml::from_str("/bin: {link: usr/bin}\n/x.sh: {script: /bin/sh}\n/y: binary\n")
                .unwrap();
        assert_eq!(t["/bin"], FileSpec::Link("usr/bin".into()));
        assert_eq!(t["/y"], FileSpec::Binary);
        assert!(normalized(&t).is_ok());
        let bad = FileTable::from([("rel".into(), FileSpec::Binary)]);
        assert!(matches!(normalized(&bad), Err(FileError::NotAbsolute(_))));
    }
}
