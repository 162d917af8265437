#!/usr/bin/env bash
# Crash-recovery soak: SIGKILLs the agent (release build) N times while it
# learns from the fake Tetragon, checking the sled database after every kill.
#
#   scripts/crash-test.sh [KILLS]      # default 50
#
# Environment: CRASH_SEED replays a run (the test prints its seed),
# CRASH_RATE sets the fake's execs per second, CRASH_EXECS_PER_CONTAINER the
# number of distinct executables per container.
set -euo pipefail

kills="${1:-50}"
case "$kills" in
  '' | *[!0-9]*)
    echo "usage: $0 [KILLS]   (KILLS a positive number, default 50)" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
cargo build --release --bins
CRASH_KILLS="$kills" cargo test --release --test crash_recovery -- --nocapture
