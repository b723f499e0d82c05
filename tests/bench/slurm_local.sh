#!/usr/bin/env bash
# Starts (or stops) a one-node Slurm on this machine for the side-by-side benchmark:
# munged, slurmctld and slurmd from Debian's slurm-wlm, state under $SLURM_BENCH_DIR.
#   tests/bench/slurm_local.sh start [default|ht]
#   tests/bench/slurm_local.sh stop
#   tests/bench/slurm_local.sh config [default|ht]    # print the slurm.conf only
# Prints the SLURM_CONF path to export on start.
#
# Profiles:
#   default  Slurm's defaults, except process tracking without cgroups (the default,
#            proctrack/cgroup, wants a cgroup.conf and a delegated cgroup tree this script does
#            not set up) and room for the drain's jobs.
#   ht       the same plus the settings of Slurm's high-throughput computing guide that apply to
#            22.05 on one node: deferred and rate-limited scheduling, a bounded backfill, short
#            job records, quieter logs, and no accounting or job-completion plugins.
# Both give the node as many CPUs as the machine has and every job one CPU, with no
# oversubscription: as many jobs run at once as under sched-agent, which offers one slot per CPU.
set -euo pipefail
DIR=${SLURM_BENCH_DIR:-/tmp/sched-bench-slurm}
CONF=$DIR/slurm.conf
ACTION=${1:-start}
PROFILE=${2:-default}

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  sleep 0.5
}

config() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
  cat <<CONF
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
# the default, proctrack/cgroup, wants a cgroup.conf and a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# one CPU per job, as many jobs as CPUs
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the drain submits one array job (defaults: MaxJobCount 10,000, MaxArraySize 1,001)
MaxJobCount=100000
MaxArraySize=100001
# a fresh state folder each run: let the node take work as soon as it registers
ReturnToService=2
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=bench Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  if [ "$PROFILE" = ht ]; then
    cat <<'CONF'
# ---- high-throughput profile (Slurm's high-throughput computing guide)
SchedulerType=sched/backfill
SchedulerParameters=defer,batch_sched_delay=0,sched_min_interval=100000,default_queue_depth=1000,partition_job_depth=1000,max_rpc_cnt=150,max_sched_time=2,bf_continue,bf_interval=30,bf_max_job_test=1000,bf_yield_interval=1000000,bf_yield_sleep=100000
MessageTimeout=30
MinJobAge=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SlurmctldDebug=error
SlurmdDebug=error
CONF
  fi
}

case "$ACTION" in
  stop)
    stop
    exit 0
    ;;
  config)
    config
    exit 0
    ;;
  start) ;;
  *)
    echo "usage: $0 start [default|ht] | stop | config [default|ht]" >&2
    exit 2
    ;;
esac
case "$PROFILE" in
  default | ht) ;;
  *)
    echo "unknown profile $PROFILE (default | ht)" >&2
    exit 2
    ;;
esac

if ! command -v slurmctld >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >/dev/null
fi
stop
rm -rf "$DIR"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
config >"$CONF"
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
