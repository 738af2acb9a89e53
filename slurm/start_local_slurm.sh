#!/usr/bin/env bash
# Starts a real single-node Slurm on this machine (Debian's slurm-wlm + munge), for tests
# and for trying `moelab submit` on a laptop. Everything (config, state, logs, pids) lives
# in STATE_DIR; stop it with slurm/stop_local_slurm.sh STATE_DIR.
#   slurm/start_local_slurm.sh /tmp/moelab-slurm
#   export SLURM_CONF=/tmp/moelab-slurm/slurm.conf
# Needs root (slurmd runs jobs as their users; munged needs its key). Exits nonzero, with
# the daemons' logs on stderr, if the node does not come up within 60 s.
set -euo pipefail
STATE=${1:?usage: start_local_slurm.sh STATE_DIR}
mkdir -p "$STATE"/{spool,state,log}
STATE=$(cd "$STATE" && pwd)
HOST=$(hostname -s)
# The CPUs this process may use: nproc would also obey OMP_NUM_THREADS (scripts/test.sh sets
# it to 1 per test), and a node of 1 CPU refuses every 2-rank job.
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
# A bit under the free memory, so that slurmd accepts the node (it checks RealMemory).
MEM_MB=$(awk '/MemAvailable/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

for bin in slurmctld slurmd munged sbatch squeue; do
  command -v "$bin" >/dev/null || { echo "error: $bin not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
done

cat > "$STATE/slurm.conf" <<CONF
ClusterName=moelab-local
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=${MOELAB_SLURMCTLD_PORT:-6817}
SlurmdPort=${MOELAB_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=600
KillWait=5
JobRequeue=1
MpiDefault=none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF="$STATE/slurm.conf"

# munge: the key the package installed; one daemon per machine is enough.
if ! munge -n >/dev/null 2>&1; then
  mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
  munged --force
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
# Up to 60 s for the node to be idle; each sinfo bounded (it waits on a dead controller), and
# a controller that died at start (e.g. its port taken) fails at once.
deadline=$((SECONDS + 60))
why="the Slurm node did not become idle"
while [ "$SECONDS" -lt "$deadline" ]; do
  state=$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null | sed -n 1p || true)
  if [ "$state" = "idle" ]; then
    echo "slurm up: node $HOST ($CPUS CPUs, ${MEM_MB} MB), SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  if [ -f "$STATE/slurmctld.pid" ] && ! kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    why="slurmctld exited at start"
    break
  fi
  sleep 0.5
done
pkill -f "slurmd -f $SLURM_CONF" 2>/dev/null || true
echo "error: $why (state: ${state:-none}); logs:" >&2
tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
exit 1
