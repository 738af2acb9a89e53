#!/usr/bin/env bash
# Stops the Slurm that start_local_slurm.sh started in STATE_DIR: by the pids it wrote,
# never by name (other Slurm daemons on the machine are left alone).
set -uo pipefail
STATE=${1:?usage: stop_local_slurm.sh STATE_DIR}
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
done
exit 0
