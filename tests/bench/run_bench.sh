#!/usr/bin/env bash
# Side-by-side figures for docs/benchmarks.md: sched, and Slurm (Debian's slurm-wlm) with its
# defaults and with its high-throughput settings, on this machine, in one run.
#   tests/bench/run_bench.sh [build-dir]
# Needs: a build (deploy/build.sh), root (to start munged/slurmctld/slurmd/slurmrestd). Prints a
# markdown table and writes a chart (CHART, default docs/benchmarks.png; empty: none).
#
# Sizes (environment):
#   JOBS=10000          jobs sched drains on one node
#   SLURM_JOBS=200      jobs each Slurm profile drains (Slurm starts ~1-2 jobs/s here, so 10,000
#                       would take hours; the table projects its 10,000 from this rate)
#   NODES=10000 PENDING=100000 COMPLETIONS=100000   the in-process placement benchmark, plain fit
#   COST_COMPLETIONS=6000  completions timed with the cost model on
#   SECONDS_EACH=5 START_JOBS=200 CLI_JOBS=300 REST_THREADS=16
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(realpath "${1:-build}")/bin
WORK=$(mktemp -d /tmp/sched-bench-XXXXXX)
PORT=17370
export SCHED_SERVER=127.0.0.1:$PORT
SECONDS_EACH=${SECONDS_EACH:-5}
START_JOBS=${START_JOBS:-200}
CLI_JOBS=${CLI_JOBS:-300}
JOBS=${JOBS:-10000}
SLURM_JOBS=${SLURM_JOBS:-200}
NODES=${NODES:-10000}
PENDING=${PENDING:-100000}
COMPLETIONS=${COMPLETIONS:-100000}
COST_COMPLETIONS=${COST_COMPLETIONS:-6000}
REST_THREADS=${REST_THREADS:-16}
CHART=${CHART-docs/benchmarks.png}
# slurmrestd makes its socket after it has switched to the unprivileged user
REST_SOCKET=$WORK/rest/slurmrestd.sock
mkdir "$WORK/rest" && chown nobody "$WORK/rest" && chmod 711 "$WORK"

cleanup() {
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "${SCHEDD_PID:-}" ] && kill "$SCHEDD_PID" 2>/dev/null || true
  [ -n "${REST_PID:-}" ] && kill "$REST_PID" 2>/dev/null || true
  tests/bench/slurm_local.sh stop || true
  rm -rf "$WORK"
}
trap cleanup EXIT

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
now_ns() { date +%s%N; }
per_s() { awk -v n="$1" -v ns="$2" 'BEGIN {printf "%.0f", n / (ns / 1e9)}'; }
secs() { awk -v ns="$1" 'BEGIN {printf "%.1f", ns / 1e9}'; }

start_schedd() {
  rm -rf "$WORK/schedd"
  "$BIN/schedd" --data_dir="$WORK/schedd" --listen="$SCHED_SERVER" --metrics_listen= \
    >"$WORK/schedd.log" 2>&1 &
  SCHEDD_PID=$!
  for _ in $(seq 100); do "$BIN/schedctl" get nodes >/dev/null 2>&1 && return; sleep 0.1; done
  echo "schedd did not start" >&2; exit 1
}
stop_sched() {
  kill ${AGENT_PID:-} "$SCHEDD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  AGENT_PID=; SCHEDD_PID=
}
start_agent() {
  "$BIN/sched-agent" --name=bench --work_dir="$WORK/agent" --metrics_listen= \
    --gpu_detection=none >"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 100); do "$BIN/schedctl" get nodes 2>/dev/null | grep -q READY && return; sleep 0.1; done
  echo "sched-agent did not connect" >&2; exit 1
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- sched: durable submits through the API (empty queue each time, no agent)
start_schedd
lone=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=lone --seconds="$SECONDS_EACH")
api=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=submit --seconds="$SECONDS_EACH" --in_flight=64 --channels=4)
stop_sched

# ---- sched: one CLI process per submit, as a user's script would
start_schedd
printf 'name: cli\nrun: "true"\n' >"$WORK/job.yaml"
t0=$(now_ns)
for _ in $(seq "$CLI_JOBS"); do "$BIN/schedctl" submit -f "$WORK/job.yaml" >/dev/null; done
sched_cli=$(per_s "$CLI_JOBS" $(( $(now_ns) - t0 )))
stop_sched

# ---- sched: submit -> process started, then drains, on one idle agent (one job per CPU)
start_schedd
start_agent
start=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=start --jobs="$START_JOBS" --marker_dir="$WORK/markers")
stop_sched
start_schedd
start_agent
drain_small=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=drain --jobs="$SLURM_JOBS")
stop_sched
start_schedd
start_agent
drain=$("$BIN/sched-bench" --server="$SCHED_SERVER" --mode=drain --jobs="$JOBS")
stop_sched

# ---- sched: placement in the core, simulated cluster: with the cost model (catalog, priced
# nodes, runtimes, deadlines, policies, budgets), then a plain fit (every node $0, plain jobs)
placement_cost=$("$BIN/sched-placement-bench" --nodes="$NODES" --pending="$PENDING" \
  --completions="$COST_COMPLETIONS")
placement=$("$BIN/sched-placement-bench" --cost_model=false --nodes="$NODES" --pending="$PENDING" \
  --completions="$COMPLETIONS")
# the plain fit with 1,000 distinct requests in the queue instead of 64: a pass grows with them
placement_wide=$("$BIN/sched-placement-bench" --cost_model=false --nodes="$NODES" \
  --pending="$PENDING" --completions="$COMPLETIONS" --shapes=1000)

# ---- Slurm on the same machine, once per profile
if ! command -v slurmrestd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmrestd >/dev/null
fi
declare -A slurm_cli slurm_rest slurm_start slurm_drain
for profile in default ht; do
  export SLURM_CONF=$(tests/bench/slurm_local.sh start "$profile")
  cp "$SLURM_CONF" "$WORK/slurm-$profile.conf"

  t0=$(now_ns)
  for _ in $(seq "$CLI_JOBS"); do sbatch -Q --output=/dev/null --wrap true >/dev/null; done
  slurm_cli[$profile]=$(per_s "$CLI_JOBS" $(( $(now_ns) - t0 )))
  scancel --quiet --user=root || true

  # slurmrestd refuses to run as root; with rest_auth/local it takes requests on a unix socket
  # and submits as the user it runs as (nobody).
  slurmrestd -s v0.0.38 -a rest_auth/local -u nobody "unix:$REST_SOCKET" >"$WORK/slurmrestd.log" 2>&1 &
  REST_PID=$!
  for _ in $(seq 50); do [ -S "$REST_SOCKET" ] && break; sleep 0.1; done
  slurm_rest[$profile]=$(python3 tests/bench/slurm_rest_submit.py "$REST_SOCKET" \
    --seconds="$SECONDS_EACH" --threads="$REST_THREADS")
  kill "$REST_PID"; wait "$REST_PID" 2>/dev/null || true; REST_PID=
  rm -f "$REST_SOCKET"
  scancel --quiet --user=nobody || true
  for _ in $(seq 100); do [ -z "$(squeue -h -o %i)" ] && break; sleep 0.2; done

  slurm_start[$profile]=$("$BIN/sched-bench" --mode=start --jobs="$(( START_JOBS / 10 ))" \
    --marker_dir="$WORK/slurm-markers" --submit_cmd="sbatch -Q --output=/dev/null --wrap {run}")

  # The drain: one array job of SLURM_JOBS tasks, each `true` on one CPU, as a Slurm user
  # submits many alike jobs; finished when squeue lists nothing.
  t0=$(now_ns)
  sbatch -Q --output=/dev/null --array="0-$(( SLURM_JOBS - 1 ))" --wrap true >/dev/null
  while [ -n "$(squeue -h -o %i)" ]; do sleep 0.1; done
  slurm_drain[$profile]=$(( $(now_ns) - t0 ))
  tests/bench/slurm_local.sh stop
done

# ---- The table
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "—"; else printf "%.1f×", a / b}'; }
api_rate=$(echo "$api" | field jobs_per_s)
s50=$(echo "$start" | field p50_ms); s99=$(echo "$start" | field p99_ms)
drain_s=$(echo "$drain" | field seconds); drain_rate=$(echo "$drain" | field jobs_per_s)
small_s=$(echo "$drain_small" | field seconds)
declare -A rest_rate l50 l99 drain_rate_slurm drain_small_s drain_proj_s
for p in default ht; do
  rest_rate[$p]=$(echo "${slurm_rest[$p]}" | field jobs_per_s)
  l50[$p]=$(echo "${slurm_start[$p]}" | field p50_ms)
  l99[$p]=$(echo "${slurm_start[$p]}" | field p99_ms)
  drain_small_s[$p]=$(secs "${slurm_drain[$p]}")
  drain_rate_slurm[$p]=$(awk -v n="$SLURM_JOBS" -v ns="${slurm_drain[$p]}" 'BEGIN {printf "%.2f", n / (ns / 1e9)}')
  drain_proj_s[$p]=$(awk -v n="$JOBS" -v m="$SLURM_JOBS" -v ns="${slurm_drain[$p]}" \
    'BEGIN {printf "%.0f", n / m * ns / 1e9}')
done
c_rate=$(echo "$placement_cost" | field placed_per_s)
c_pass=$(echo "$placement_cost" | field passes_per_s)
c50=$(echo "$placement_cost" | field p50_us); c99=$(echo "$placement_cost" | field p99_us)
c_all_dec=$(echo "$placement_cost" | field all_decisions_per_s)
c_all_placed=$(echo "$placement_cost" | field all_placed_per_s)
f_dec=$(echo "$placement_cost" | field fill_decisions_per_s)
f_placed=$(echo "$placement_cost" | field fill_placed_per_s)
f99=$(echo "$placement_cost" | field connect_p99_us)
p_rate=$(echo "$placement" | field placed_per_s)
p_pass=$(echo "$placement" | field passes_per_s)
p50=$(echo "$placement" | field p50_us); p99=$(echo "$placement" | field p99_us)
w_rate=$(echo "$placement_wide" | field placed_per_s)
w_pass=$(echo "$placement_wide" | field passes_per_s)
w50=$(echo "$placement_wide" | field p50_us); w99=$(echo "$placement_wide" | field p99_us)

row() { echo "| $1 | $2 | $3 | $4 | $5 | $6 |"; }
echo
row "measure" "sched" "Slurm default" "Slurm HT" "sched vs default" "sched vs HT"
row "---" "---" "---" "---" "---" "---"
row "durable submits/s, API (sched gRPC, 64 in flight; slurmrestd, $REST_THREADS threads)" \
  "$api_rate" "${rest_rate[default]}" "${rest_rate[ht]}" \
  "$(ratio "$api_rate" "${rest_rate[default]}")" "$(ratio "$api_rate" "${rest_rate[ht]}")"
row "submits/s, one CLI process per job (\`schedctl submit\` / \`sbatch\`)" \
  "$sched_cli" "${slurm_cli[default]}" "${slurm_cli[ht]}" \
  "$(ratio "$sched_cli" "${slurm_cli[default]}")" "$(ratio "$sched_cli" "${slurm_cli[ht]}")"
row "submit ack p50 / p99, lone client (ms)" \
  "$(echo "$lone" | field p50_ms) / $(echo "$lone" | field p99_ms)" "—" "—" "—" "—"
row "submit → process started, idle node, p50 (ms)" "$s50" "${l50[default]}" "${l50[ht]}" \
  "$(ratio "${l50[default]}" "$s50") faster" "$(ratio "${l50[ht]}" "$s50") faster"
row "submit → process started, idle node, p99 (ms)" "$s99" "${l99[default]}" "${l99[ht]}" \
  "$(ratio "${l99[default]}" "$s99") faster" "$(ratio "${l99[ht]}" "$s99") faster"
row "drain $SLURM_JOBS trivial jobs, one node, 2 at a time (s)" "$small_s" \
  "${drain_small_s[default]}" "${drain_small_s[ht]}" \
  "$(ratio "${drain_small_s[default]}" "$small_s") faster" "$(ratio "${drain_small_s[ht]}" "$small_s") faster"
row "drain $JOBS trivial jobs, one node, 2 at a time (s)" "$drain_s" \
  "~${drain_proj_s[default]} (projected)" "~${drain_proj_s[ht]} (projected)" \
  "$(ratio "${drain_proj_s[default]}" "$drain_s") faster" "$(ratio "${drain_proj_s[ht]}" "$drain_s") faster"
row "placement with the cost model, $NODES nodes, $PENDING pending: jobs placed/s of completion time" "$c_rate" "—" "—" "—" "—"
row "placement with the cost model: completions handled/s, each one placement pass" "$c_pass" "—" "—" "—" "—"
row "placement with the cost model: one completion's pass p50 / p99 (µs; target p99 ≤ 1,000)" "$c50 / $c99" "—" "—" "—" "—"
row "placement with the cost model: cost-brain decisions/s (target ≥ 20,000); jobs placed/s, over all scheduler time (completions, submits, ticks)" "$c_all_dec; $c_all_placed" "—" "—" "—" "—"
row "placement with the cost model, filling $NODES nodes as their agents connect: decisions/s; jobs placed/s; a connect's pass p99 (µs)" "$f_dec; $f_placed; $f99" "—" "—" "—" "—"
row "placement, plain fit (no prices), $NODES nodes, $PENDING pending: jobs placed/s" "$p_rate" "—" "—" "—" "—"
row "placement, plain fit: completions handled/s, each one placement pass" "$p_pass" "—" "—" "—" "—"
row "placement, plain fit: one completion's pass p50 / p99 (µs)" "$p50 / $p99" "—" "—" "—" "—"
row "placement, plain fit, 1,000 distinct requests queued: jobs placed/s; completions/s" "$w_rate; $w_pass" "—" "—" "—" "—"
row "placement, plain fit, 1,000 distinct requests queued: pass p50 / p99 (µs)" "$w50 / $w99" "—" "—" "—" "—"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw: $lone"
echo "raw: $api"
echo "raw: sched cli jobs_per_s=$sched_cli"
echo "raw: $start"
echo "raw: $drain_small"
echo "raw: $drain"
echo "$placement_cost" | sed 's/^/raw: /'
echo "raw: $placement"
echo "raw: $placement_wide"
for p in default ht; do
  echo "raw: slurm-$p cli jobs_per_s=${slurm_cli[$p]}"
  echo "raw: slurm-$p ${slurm_rest[$p]}"
  echo "raw: slurm-$p ${slurm_start[$p]}"
  echo "raw: slurm-$p mode=drain jobs=$SLURM_JOBS seconds=${drain_small_s[$p]} jobs_per_s=${drain_rate_slurm[$p]}"
done

# ---- The chart: throughput on the left, latency on the right, log scales
[ -z "$CHART" ] && exit 0
if ! command -v gnuplot >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
fi
cat >"$WORK/throughput.dat" <<DAT
# measure sched slurm_default slurm_ht
"API submit" $api_rate ${rest_rate[default]} ${rest_rate[ht]}
"CLI submit" $sched_cli ${slurm_cli[default]} ${slurm_cli[ht]}
"drain" $drain_rate ${drain_rate_slurm[default]} ${drain_rate_slurm[ht]}
DAT
cat >"$WORK/latency.dat" <<DAT
# measure sched slurm_default slurm_ht
"start p50" $s50 ${l50[default]} ${l50[ht]}
"start p99" $s99 ${l99[default]} ${l99[ht]}
DAT
gnuplot <<GP
set terminal pngcairo size 1100,480 font "sans,10"
set output "$CHART"
set multiplot layout 1,2 title "sched vs Slurm 22.05 on one $(nproc)-core machine, $(date -u +%F)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set grid ytics
set key outside bottom center horizontal
set title "throughput (higher is better)"
set ylabel "jobs/s"
set yrange [0.1:*]
plot "$WORK/throughput.dat" using 2:xtic(1) title "sched" lc rgb "#2a7ab9", \
     '' using 3 title "Slurm default" lc rgb "#c0504d", '' using 4 title "Slurm HT" lc rgb "#e8a33d"
set title "submit → process started (lower is better)"
set ylabel "ms"
set yrange [1:*]
plot "$WORK/latency.dat" using 2:xtic(1) title "sched" lc rgb "#2a7ab9", \
     '' using 3 title "Slurm default" lc rgb "#c0504d", '' using 4 title "Slurm HT" lc rgb "#e8a33d"
unset multiplot
GP
echo "chart: $CHART"
