#!/usr/bin/env bash
# Starts (or stops) a one-node Slurm on this machine for the side-by-side benchmark:
# munged, slurmctld and slurmd from Debian's slurm-wlm, state under $SLURM_BENCH_DIR.
#   tests/bench/slurm_local.sh start|stop
# Prints the SLURM_CONF path to export on start.
set -euo pipefail
DIR=${SLURM_BENCH_DIR:-/tmp/sched-bench-slurm}
CONF=$DIR/slurm.conf

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  sleep 0.5
}

if [ "${1:-start}" = "stop" ]; then
  stop
  exit 0
fi

if ! command -v slurmctld >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm >/dev/null
fi
stop
rm -rf "$DIR"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
cat >"$CONF" <<CONF
ClusterName=bench
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MaxJobCount=1000000
MinJobAge=2
NodeName=localhost CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=bench Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:64
CONF
export SLURM_CONF=$CONF
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  su -s /bin/sh munge -c /usr/sbin/munged || /usr/sbin/munged --force
fi
slurmctld -f "$CONF"
slurmd -f "$CONF"
for _ in $(seq 100); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    echo "$CONF"
    exit 0
  fi
  sleep 0.2
done
echo "slurm did not come up; see $DIR/log" >&2
exit 1
