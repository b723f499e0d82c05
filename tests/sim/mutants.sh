#!/usr/bin/env bash
# Proves the simulation bites: builds sched-sim once per deliberate bug in the scheduler core
# and expects the seeds to catch each one. A mutant that survives means an invariant is not
# checked. Run from anywhere:
#   tests/sim/mutants.sh [seeds]        (default 300 seeds per mutant)
# Builds in a temporary copy of the tracked sources (ccache keeps it quick after the first).
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${1:-300}
WORK=$(mktemp -d /tmp/sched-mutants-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src"
git ls-files -z | xargs -0 cp --parents -t "$WORK/src"
ORIG="$WORK/scheduler.cc.orig"
cp "$WORK/src/server/core/scheduler.cc" "$ORIG"
cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

# name | code as written | the bug
MUTANTS=(
  "reports of any epoch accepted|  if (job.epoch != ref.epoch \|\| job.node != node \|\| !IsLeased(job.state)) {|  if (job.node != node \|\| !IsLeased(job.state)) {"
  "epochs not restored at start|    last_epoch_ = std::max(last_epoch_, job.epoch);|"
  "answer before the sync|  if (out.ticket == 0) {|  if (true) {"
  "cancel forgotten when the agent reports|  if (job.cancel_requested) {\n    final_state = JobState::kCancelled;|  if (false) {\n    final_state = JobState::kCancelled;"
  "leases never expire|      if (expiry < now) expired.push_back(id);|      if (false) expired.push_back(id);"
  "cancel said once only|      if ((*job)->cancel_requested \&\& entry.link) {|      if (false) {"
)

survivors=0
printf '| mutant | seeds failed |\n|---|---|\n'
for m in "${MUTANTS[@]}"; do
  IFS='|' read -r name old new <<<"$(printf '%s' "$m" | sed 's/\\|/\x01/g')"
  old=${old//$'\x01'/|}; new=${new//$'\x01'/|}
  cp "$ORIG" "$WORK/src/server/core/scheduler.cc"
  OLD="$old" NEW="$new" python3 - "$WORK/src/server/core/scheduler.cc" <<'PY'
import os, sys
path = sys.argv[1]
old = os.environ["OLD"].replace("\\n", "\n").replace("\\&", "&")
new = os.environ["NEW"].replace("\\n", "\n").replace("\\&", "&")
text = open(path).read()
if old not in text:
    sys.exit(f"mutant anchor not found in scheduler.cc: {old!r}")
open(path, "w").write(text.replace(old, new, 1))
PY
  cmake --build "$WORK/build" --target sched_sim_main -j "${JOBS:-2}" >/dev/null
  # sched-sim exits non-zero when seeds fail, which is the point here.
  failed=$({ "$WORK/build/bin/sched-sim" --seeds="$SEEDS" || true; } |
    sed -n 's/.* ran, \([0-9]*\) failed.*/\1/p')
  printf '| %s | %s of %s |\n' "$name" "$failed" "$SEEDS"
  [ "${failed:-0}" -gt 0 ] || survivors=$((survivors + 1))
done
if [ "$survivors" -gt 0 ]; then
  echo "$survivors mutant(s) survived: an invariant is not being checked" >&2
  exit 1
fi
