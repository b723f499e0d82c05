#!/usr/bin/env bash
# Side-by-side figures for docs/benchmarks.md: sched and Slurm (Debian's slurm-wlm) on this
# machine, in the same run.
#   tests/bench/run_bench.sh [build-dir]
# Needs: a build (deploy/build.sh), root (to start munged/slurmctld/slurmd). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build}/bin
WORK=$(mktemp -d /tmp/sched-bench-XXXXXX)
PORT=17370
export SCHED_SERVER=127.0.0.1:$PORT
SECONDS_EACH=${SECONDS_EACH:-5}
START_JOBS=${START_JOBS:-200}
CLI_JOBS=${CLI_JOBS:-300}

cleanup() {
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "${SCHEDD_PID:-}" ] && kill "$SCHEDD_PID" 2>/dev/null || true
  tests/bench/slurm_local.sh stop || true
  rm -rf "$WORK"
}
trap cleanup EXIT

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

start_schedd() {
  rm -rf "$WORK/schedd"
  "$BIN/schedd" --data_dir="$WORK/schedd" --listen="$SCHED_SERVER" --metrics_listen= \
    >"$WORK/schedd.log" 2>&1 &
  SCHEDD_PID=$!
  for _ in $(seq 100); do "$BIN/schedctl" get nodes >/dev/null 2>&1 && return; sleep 0.1; done
  echo "schedd did not start" >&2; exit 1
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

# ---- sched: durable submits through the API (empty queue each time, no agent)
start_schedd
lone=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=lone --seconds="$SECONDS_EACH")
api=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=submit --seconds="$SECONDS_EACH" --in_flight=64 --channels=4)
kill "$SCHEDD_PID"; wait "$SCHEDD_PID" 2>/dev/null || true

# ---- sched: one CLI process per submit, as a user's script would
start_schedd
printf 'name: cli\nrun: "true"\n' >"$WORK/job.yaml"
t0=$(date +%s%N)
for _ in $(seq "$CLI_JOBS"); do "$BIN/schedctl" submit -f "$WORK/job.yaml" >/dev/null; done
t1=$(date +%s%N)
sched_cli=$(awk -v n="$CLI_JOBS" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", n / (ns / 1e9)}')
kill "$SCHEDD_PID"; wait "$SCHEDD_PID" 2>/dev/null || true

# ---- sched: submit -> process started, one idle agent
start_schedd
"$BIN/sched-agent" --name=bench --work_dir="$WORK/agent" --metrics_listen= \
  --gpu_detection=none >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do "$BIN/schedctl" get nodes 2>/dev/null | grep -q READY && break; sleep 0.1; done
start=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=start --jobs="$START_JOBS" --marker_dir="$WORK/markers")
kill "$AGENT_PID" "$SCHEDD_PID"; wait 2>/dev/null || true
AGENT_PID=; SCHEDD_PID=

# ---- Slurm on the same machine
export SLURM_CONF=$(tests/bench/slurm_local.sh start)
t0=$(date +%s%N)
for _ in $(seq "$CLI_JOBS"); do sbatch -Q --output=/dev/null --wrap true >/dev/null; done
t1=$(date +%s%N)
slurm_cli=$(awk -v n="$CLI_JOBS" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", n / (ns / 1e9)}')
scancel --quiet --user=root || true
sleep 1
slurm_start=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=start --jobs="$(( START_JOBS / 10 ))" \
  --marker_dir="$WORK/slurm-markers" --submit_cmd="sbatch -Q --output=/dev/null --wrap {run}")

api_rate=$(echo "$api" | field jobs_per_s)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
s50=$(echo "$start" | field p50_ms); s99=$(echo "$start" | field p99_ms)
l50=$(echo "$slurm_start" | field p50_ms); l99=$(echo "$slurm_start" | field p99_ms)

echo
echo "| measure | sched | Slurm | sched / Slurm |"
echo "|---|---|---|---|"
echo "| durable submits/s, API, 64 in flight | $api_rate | — | — |"
echo "| durable submits/s, one CLI process per job | $sched_cli | $slurm_cli | $(ratio "$sched_cli" "$slurm_cli")× |"
echo "| API submit vs sbatch, jobs/s | $api_rate | $slurm_cli | $(ratio "$api_rate" "$slurm_cli")× |"
echo "| submit ack p50 / p99, lone client (ms) | $(echo "$lone" | field p50_ms) / $(echo "$lone" | field p99_ms) | — | — |"
echo "| submit → process started p50 (ms) | $s50 | $l50 | $(ratio "$l50" "$s50")× faster |"
echo "| submit → process started p99 (ms) | $s99 | $l99 | $(ratio "$l99" "$s99")× faster |"
echo
echo "raw: $lone"
echo "raw: $api"
echo "raw: $start"
echo "raw: slurm $slurm_start"
