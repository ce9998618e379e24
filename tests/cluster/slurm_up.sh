#!/usr/bin/env bash
# Bring up a real single-node SLURM on localhost for the cluster tests (root, Debian).
#   slurm_up.sh STATE_DIR     installs slurm-wlm + munge if missing, starts munged,
#                             slurmctld and slurmd; two fake GPUs as gres.
#   slurm_up.sh STATE_DIR down   stops exactly what it started.
# No systemd and no cgroups are assumed (containers): proctrack/linuxproc, task/none.
set -euo pipefail
DIR=${1:?state dir}
ACTION=${2:-up}
mkdir -p "$DIR"/{state,spool,log}

stop() {
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}
if [ "$ACTION" = down ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi
[ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }

mkdir -p /etc/slurm /run/munge && chown munge:munge /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=emotf-test
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
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MinJobAge=600
DefMemPerCPU=500
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
NodeName=localhost Name=gpu File=/dev/zero
CONF

stop
su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$DIR/munged.pid" || /usr/sbin/munged --force
/usr/sbin/slurmctld -i
/usr/sbin/slurmd -N localhost
for _ in $(seq 1 30); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed'; then
    echo "SLURM up: $(sinfo -h -o '%P %T' | tr '\n' ' ')"
    exit 0
  fi
  sleep 1
done
echo "SLURM did not come up; see $DIR/log" >&2
exit 1
