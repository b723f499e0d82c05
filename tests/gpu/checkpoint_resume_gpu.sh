#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and PyTorch: schedd, two agents on the same machine, the
# PyTorch example job (deploy/examples/torch_checkpoint_train.py) placed on the first agent,
# then after two checkpoints either that agent killed (kill -9, with the job: MODE kill) or its
# machine preempted (SIGTERM to the agent, advertised as a spot node: MODE notice). The job
# resumes on the second agent from the newest checkpoint schedd has. Keeps the logs of the
# interrupted run and of a run never interrupted, to compare, and the job's description.
#
#   tests/gpu/checkpoint_resume_gpu.sh BIN_DIR OUT_DIR [kill|notice]
# BIN_DIR holds schedd, sched-agent and schedctl (built here, or carried with their libraries).
set -euo pipefail
BIN=${1:?BIN_DIR}
OUT=${2:?OUT_DIR}
MODE=${3:-kill}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
D=$(mktemp -d)
SCRIPT=$PWD/deploy/examples/torch_checkpoint_train.py
ARGS="--steps 600 --checkpoint-every 50 --step-seconds 0.01"
ctl() { "$BIN/schedctl" --server=127.0.0.1:7470 "$@"; }
cleanup() { kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT

nvidia-smi -L | tee "$OUT/gpus.txt"
echo "== a run never interrupted"
env -u SCHED_CHECKPOINT_DIR -u SCHED_RESUME_FROM python3 "$SCRIPT" $ARGS > "$OUT/reference.log"
tail -1 "$OUT/reference.log"

"$BIN/schedd" --data_dir="$D/schedd" --listen=127.0.0.1:7470 --metrics_listen= \
  --lease_ttl_ms=3000 --heartbeat_interval_ms=500 > "$OUT/schedd.log" 2>&1 &
sleep 1
SPOT=()
[ "$MODE" = notice ] && SPOT=(--spot=true --provider=vastai --price_per_hour=1.2
                             --preemption_notice=sigterm --sigterm_notice_seconds=20)
# Both agents share this machine's GPU, so neither takes the other's job for its owner's.
"$BIN/sched-agent" --server=127.0.0.1:7470 --name=gpu-a --work_dir="$D/a" --metrics_listen= \
  --checkpoint_poll_ms=100 --owner_first=off "${SPOT[@]}" > "$OUT/agent-a.log" 2>&1 &
A=$!
sleep 2
cat > "$D/job.yaml" <<YAML
name: torch-train
project: demo
run: |
  echo \$\$ > $D/pid-\$SCHED_ATTEMPT
  exec python3 $SCRIPT $ARGS
resources:
  gpus: 1
  cpus: 1
  memory: 4GB
YAML
ID=$(ctl submit -f "$D/job.yaml" | grep -o '[0-9a-f]\{16\}' | head -1)
echo "job $ID"
for i in $(seq 1 600); do
  ctl describe job "$ID" | grep -q '^State: *RUNNING' && break
  sleep 0.1
done
# The second agent joins once the job runs on the first: it is where the job goes next.
"$BIN/sched-agent" --server=127.0.0.1:7470 --name=gpu-b --work_dir="$D/b" --metrics_listen= \
  --checkpoint_poll_ms=100 --owner_first=off > "$OUT/agent-b.log" 2>&1 &
for i in $(seq 1 1200); do
  [ "$(ctl checkpoints "$ID" 2>/dev/null | grep -c step-)" -ge 2 ] && break
  sleep 0.1
done
ctl checkpoints "$ID" | tee "$OUT/checkpoints-before-kill.txt"
if [ "$MODE" = notice ]; then
  echo "== preemption notice: SIGTERM to agent gpu-a"
  kill -TERM "$A"
else
  echo "== kill -9 of agent gpu-a and its job"
  kill -9 "$A"
  kill -9 -- "-$(cat "$D/pid-1")"
fi
KILLED=$(date +%s.%N)
for i in $(seq 1 1200); do
  ctl describe job "$ID" | grep -q '^State: *SUCCEEDED\|^State: *FAILED' && break
  sleep 0.2
done
DONE=$(date +%s.%N)
ctl describe job "$ID" > "$OUT/describe.txt"
ctl logs "$ID" > "$OUT/job.log"
ctl checkpoints "$ID" > "$OUT/checkpoints-after.txt"
grep -E '^State|^Attempt' "$OUT/describe.txt"
sed -n '/^Attempts:/,/^[A-Z]/p' "$OUT/describe.txt"
echo "$MODE to end: $(python3 -c "print(round($DONE - $KILLED, 2))") s"
echo "== results"
echo "never interrupted: $(grep '^result:' "$OUT/reference.log")"
echo "killed, resumed:   $(grep '^result:' "$OUT/job.log")"
grep -E '^resumed from|^starting on' "$OUT/job.log"
if [ "$(grep '^result:' "$OUT/reference.log")" = "$(grep '^result:' "$OUT/job.log")" ]; then
  echo "SAME RESULT"
else
  echo "DIFFERENT RESULT"
fi
