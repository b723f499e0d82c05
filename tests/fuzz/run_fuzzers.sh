#!/usr/bin/env bash
# Runs each fuzz target of a SCHED_FUZZ build for a while, one after another, and says what it
# cost and found (docs/fuzzing.md).
#
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [TARGET...]
#
# New inputs go to BUILD_DIR/fuzz-runs/<target>/corpus (merge them into tests/fuzz/corpus with
# -merge=1 afterwards), crashes to BUILD_DIR/fuzz-runs/<target>/crash-*. Runs in fork mode and
# goes on after a crash. $SCHED_FUZZ_KNOWN_ISSUES passes through (fuzz_support.h).
set -euo pipefail

build=$(cd "$1" && pwd)
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(job_spec_yaml requests checkpoint_files stored_state side_records)

for t in "${targets[@]}"; do
  out=$build/fuzz-runs/$t
  mkdir -p "$out/corpus"
  dict=()
  [[ -f $here/$t.dict ]] && dict=(-dict="$here/$t.dict")
  echo "== $t: ${seconds}s"
  /usr/bin/time -f "cpu_user_s %U cpu_sys_s %S wall_s %e max_rss_kb %M" -o "$out/time.txt" \
    "$build/tests/fuzz/${t}_fuzzer" -fork=1 -ignore_crashes=1 -max_total_time="$seconds" \
    -rss_limit_mb=2048 -timeout=25 -artifact_prefix="$out/" "${dict[@]}" \
    "$out/corpus" "$here/corpus/$t" > "$out/log" 2>&1 || true
  cat "$out/time.txt"
  grep -E '^#[0-9]+: cov' "$out/log" | tail -1 || true
  ls "$out" | grep -E '^(crash|leak|timeout|oom)-' | sed 's/^/  found /' || true
done
