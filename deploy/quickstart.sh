#!/usr/bin/env bash
# The README's first command: install, build, start schedd (embedded RocksDB under .data/) and
# one local agent, submit a demo job and show it finishing. schedd and the agent keep running;
# `deploy/quickstart.sh stop` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${SCHED_DATA:-$ROOT/.data}
BIN=${BUILD_DIR:-$ROOT/build}/bin
export SCHED_SERVER=${SCHED_SERVER:-127.0.0.1:7070}

stop() {
  for name in sched-agent schedd; do
    if [ -f "$DATA/$name.pid" ]; then
      kill "$(cat "$DATA/$name.pid")" 2>/dev/null || true
      rm -f "$DATA/$name.pid"
    fi
  done
}
if [ "${1:-}" = "stop" ]; then
  stop
  echo "stopped"
  exit 0
fi

deploy/install-deps.sh
deploy/build.sh
mkdir -p "$DATA"
stop

"$BIN/schedd" --data_dir="$DATA/schedd" --listen="$SCHED_SERVER" \
  --metrics_listen=127.0.0.1:7071 >"$DATA/schedd.log" 2>&1 &
echo $! >"$DATA/schedd.pid"
for _ in $(seq 100); do
  "$BIN/schedctl" get nodes >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN/sched-agent" --server="$SCHED_SERVER" --name="$(hostname -s)" \
  --work_dir="$DATA/agent" --metrics_listen=127.0.0.1:7072 >"$DATA/agent.log" 2>&1 &
echo $! >"$DATA/sched-agent.pid"
for _ in $(seq 100); do
  "$BIN/schedctl" get nodes 2>/dev/null | grep -q READY && break
  sleep 0.1
done

echo "== nodes"
"$BIN/schedctl" get nodes
echo "== submitting deploy/examples/hello.yaml"
out=$("$BIN/schedctl" submit -f deploy/examples/hello.yaml)
echo "$out"
id=$(echo "$out" | sed -n 's#^job/\([0-9a-f]*\).*#\1#p')
echo "== logs -f $id"
"$BIN/schedctl" logs -f "$id"
echo "== jobs"
"$BIN/schedctl" get jobs -o wide
echo
echo "schedd (gRPC $SCHED_SERVER, metrics http://127.0.0.1:7071/metrics) and sched-agent are"
echo "running; data in $DATA. Try: $BIN/schedctl get jobs -w    Stop: deploy/quickstart.sh stop"
