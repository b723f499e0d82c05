#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and PyTorch: the owner comes first. schedd and one agent (the
# user's own machine: provider local, the owner watched through NVML), the PyTorch example job
# (deploy/examples/torch_checkpoint_train.py) placed on its GPU with placement local-only. After
# two checkpoints a CUDA process the agent did not start (the "owner's") takes the GPU for
# OWNER_SECONDS: the agent steps the job aside (SIGTERM, a last checkpoint), schedd holds the
# GPU for the owner, and once the GPU has been unused for the idle time the job resumes from its
# checkpoint and finishes. Prints the timeline and compares the result with a run never
# interrupted.
#
#   tests/gpu/owner_first_gpu.sh BIN_DIR OUT_DIR [OWNER_SECONDS] [IDLE_SECONDS]
# BIN_DIR holds schedd, sched-agent and schedctl (built here, or carried with their libraries).
set -euo pipefail
BIN=${1:?BIN_DIR}
OUT=${2:?OUT_DIR}
OWNER_SECONDS=${3:-12}
IDLE=${4:-5}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
D=$(mktemp -d)
SCRIPT=$PWD/deploy/examples/torch_checkpoint_train.py
ARGS="--steps 600 --checkpoint-every 50 --step-seconds 0.02"
ctl() { "$BIN/schedctl" --server=127.0.0.1:7471 "$@"; }
cleanup() { kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
T0=$(date +%s.%N)
at() { python3 -c "print(f'{$(date +%s.%N) - $T0:7.2f} s')"; }
state() { ctl describe job "$ID" | sed -n 's/^State: *//p' | head -1; }

nvidia-smi -L | tee "$OUT/gpus.txt"
echo "== a run never interrupted"
env -u SCHED_CHECKPOINT_DIR -u SCHED_RESUME_FROM python3 "$SCRIPT" $ARGS > "$OUT/reference.log"
tail -1 "$OUT/reference.log"

"$BIN/schedd" --data_dir="$D/schedd" --listen=127.0.0.1:7471 --metrics_listen= \
  --heartbeat_interval_ms=500 > "$OUT/schedd.log" 2>&1 &
sleep 1
"$BIN/sched-agent" --server=127.0.0.1:7471 --name=workstation --work_dir="$D/a" \
  --metrics_listen= --checkpoint_poll_ms=100 --provider=local --owner_first=on \
  --owner_idle_seconds="$IDLE" --owner_poll_ms=250 > "$OUT/agent.log" 2>&1 &
sleep 2
cat > "$D/job.yaml" <<YAML
name: torch-train
project: demo
placement: local-only
run: exec python3 $SCRIPT $ARGS
resources:
  gpus: 1
  cpus: 1
  memory: 4GB
YAML
T0=$(date +%s.%N)
ID=$(ctl submit -f "$D/job.yaml" | grep -o '[0-9a-f]\{16\}' | head -1)
echo "$(at) job $ID submitted"
for i in $(seq 1 600); do [ "$(state)" = RUNNING ] && break; sleep 0.1; done
echo "$(at) job RUNNING on the GPU (its own CUDA process is not taken for the owner's)"
for i in $(seq 1 1200); do
  [ "$(ctl checkpoints "$ID" 2>/dev/null | grep -c step-)" -ge 2 ] && break
  sleep 0.1
done
echo "$(at) two checkpoints: $(ctl checkpoints "$ID" | grep -o 'step-[0-9]*' | tr '\n' ' ')"
[ "$(state)" = RUNNING ] || { echo "job stepped aside before the owner came: $(state)"; exit 1; }
echo "$(at) the owner starts a CUDA process for ${OWNER_SECONDS} s"
python3 -c "
import os, time, torch
x = torch.ones(1 << 28, device='cuda')
print('owner pid', os.getpid(), flush=True)
end = time.time() + $OWNER_SECONDS
while time.time() < end:
    x = x * 1.0000001
torch.cuda.synchronize()
" > "$OUT/owner.log" 2>&1 &
OWNER=$!
for i in $(seq 1 600); do [ "$(state)" = PENDING ] && break; sleep 0.05; done
echo "$(at) job PENDING: stepped aside (owner pid $OWNER)"
ctl describe node workstation > "$OUT/describe-node-owner.txt"
grep "Owner's GPUs" "$OUT/describe-node-owner.txt" || true
ctl describe job "$ID" | grep -E "Message|stepped aside" | head -3 || true
wait "$OWNER" || true
echo "$(at) the owner's process ended"
for i in $(seq 1 1200); do [ "$(state)" = RUNNING ] && break; sleep 0.05; done
echo "$(at) job RUNNING again (the GPU idle for ${IDLE} s)"
for i in $(seq 1 1200); do
  case "$(state)" in SUCCEEDED|FAILED|CANCELLED) break ;; esac
  sleep 0.2
done
echo "$(at) job $(state)"
ctl describe job "$ID" > "$OUT/describe.txt"
ctl describe node workstation > "$OUT/describe-node-after.txt"
ctl logs "$ID" > "$OUT/job.log"
grep -E '^State|^Attempt' "$OUT/describe.txt"
sed -n '/^Attempts:/,/^[A-Z]/p' "$OUT/describe.txt"
grep -E 'owner|stepped aside|given back' "$OUT/agent.log" | sed 's/^/agent: /'
echo "== results"
echo "never interrupted:       $(grep '^result:' "$OUT/reference.log")"
echo "stepped aside, resumed:  $(grep '^result:' "$OUT/job.log")"
grep -E '^resumed from|^starting on' "$OUT/job.log"
if [ "$(grep '^result:' "$OUT/reference.log")" = "$(grep '^result:' "$OUT/job.log")" ]; then
  echo "SAME RESULT"
else
  echo "DIFFERENT RESULT"
fi
