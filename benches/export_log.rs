//! Throughput and peak memory of the export-log snapshot source on a large log.
//!
//! Generates `EXPORT_LOG_BENCH_MB` MiB (default 1024: the 1 GB requirement) of
//! export log in a temp dir from the real single-startup fixture: its startup
//! once, then its other lines repeated with exec_ids made unique per copy so
//! exec/exit pairs still match. Then it measures, on the same (page-cached)
//! file, a raw newline count and the full pipeline, and prints MB/s, their
//! ratio, and peak RSS (VmHWM) around the pipeline.
//!
//! Run: `cargo bench --bench export_log` (`EXPORT_LOG_BENCH_MB=256` for a quick run).
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use tetragon_learner::snapshot::export_log::{read_snapshot, ExportLogLocation};

const FIXTURE: &str = "tests/fixtures/export-log/real/tetragon-export.jsonl";
const MIB: u64 = 1024 * 1024;

mod common;
use common::{cpu_time, reset_peak_rss, vm_hwm_kib};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target_mib: u64 = std::env::var("EXPORT_LOG_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tetragon.log");
    let written = generate(&path, target_mib * MIB)?;
    println!(
        "export_log bench: {} MiB synthetic log at {}",
        written / MIB,
        path.display()
    );

    // Twice: the first pass also warms the page cache for both measurements.
    raw_line_count(&path)?;
    let (raw_lines, raw_secs) = raw_line_count(&path)?;
    let raw_mbps = mb(written) / raw_secs;
    println!("raw line count: {raw_lines} lines in {raw_secs:.2} s = {raw_mbps:.0} MB/s");

    reset_peak_rss();
    let hwm_before = vm_hwm_kib();
    let cpu_before = cpu_time(libc::RUSAGE_SELF).as_secs_f64();
    let start = Instant::now();
    let (snapshot, stats) = read_snapshot(&ExportLogLocation::Path(path.clone()))?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time(libc::RUSAGE_SELF).as_secs_f64() - cpu_before;
    let hwm_after = vm_hwm_kib();
    let mbps = mb(stats.bytes) / secs;
    println!(
        "pipeline: {} lines in {secs:.2} s = {mbps:.0} MB/s; {} startups, {} procFS execs, \
         {} live processes at end, {} skipped",
        stats.lines,
        stats.startups,
        stats.startup_counts.procfs_execs,
        snapshot.processes.len(),
        stats.skipped()
    );
    println!(
        "pipeline CPU: {cpu:.2} s = {:.0} MB per CPU second",
        mb(stats.bytes) / cpu
    );
    println!("ratio pipeline/raw: {:.3}", mbps / raw_mbps);
    println!(
        "peak RSS (VmHWM): {} MiB before pipeline, {} MiB after",
        hwm_before / 1024,
        hwm_after / 1024
    );
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Writes the fixture's startup once, then its non-startup lines over and over
/// with a per-copy exec_id prefix, until `target` bytes. Returns bytes written.
fn generate(path: &Path, target: u64) -> std::io::Result<u64> {
    let fixture = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))?;
    let lines: Vec<&str> = fixture.lines().collect();
    let body: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !is_procfs_exec(l))
        .collect();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut written = 0u64;
    for line in &lines {
        writeln!(out, "{line}")?;
        written += line.len() as u64 + 1;
    }
    let mut copy = 0u64;
    let mut next_report = 128 * MIB;
    while written < target {
        copy += 1;
        let with = format!("\"exec_id\":\"c{copy}-");
        for line in &body {
            let varied = line.replace("\"exec_id\":\"", &with);
            out.write_all(varied.as_bytes())?;
            out.write_all(b"\n")?;
            written += varied.len() as u64 + 1;
        }
        if written >= next_report {
            eprintln!("  generated {} / {} MiB", written / MIB, target / MIB);
            next_report += 128 * MIB;
        }
    }
    out.flush()?;
    Ok(written)
}

fn is_procfs_exec(line: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    v["process_exec"]["process"]["flags"]
        .as_str()
        .is_some_and(|f| f.split_whitespace().any(|w| w == "procFS"))
}

/// The floor: read and split lines, nothing else.
fn raw_line_count(path: &Path) -> std::io::Result<(u64, f64)> {
    let start = Instant::now();
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut buf = Vec::with_capacity(4096);
    let mut lines = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lines += 1;
    }
    Ok((lines, start.elapsed().as_secs_f64()))
}
