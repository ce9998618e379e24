#!/usr/bin/env bash
# Bring up a real single-node SLURM on localhost for the cluster tests (root, Debian).
#   slurm_up.sh STATE_DIR          installs slurm-wlm + munge if missing, starts munged,
#                                  slurmctld and slurmd; two fake GPUs as gres.
#   slurm_up.sh STATE_DIR down     stops exactly what it started.
#   slurm_up.sh STATE_DIR config   only checks and writes the configuration files.
# No systemd and no cgroups are assumed (containers): proctrack/linuxproc, task/none.
#
# It never touches a host's own SLURM or munge set-up: slurm.conf and gres.conf are written
# only if absent or written by this script (first line $MARK, or exactly the text an earlier
# version wrote); anything else is refused before any change. An existing munge key is used
# as it is, never replaced; a munged or slurmctld/slurmd it did not start stops it. Running it
# again while its cluster is up with the same configuration changes nothing.
# EMOTF_SLURM_ETC / EMOTF_MUNGE_KEY move the files (for this script's own tests).
set -euo pipefail
DIR=${1:?state dir}
ACTION=${2:-up}
ETC=${EMOTF_SLURM_ETC:-/etc/slurm}
MUNGE_KEY=${EMOTF_MUNGE_KEY:-/etc/munge/munge.key}
MARK="# Written by emotf tests/cluster/slurm_up.sh for its test cluster; safe to delete."
MUNGED_PID=/run/munge/emotf-test-munged.pid  # a folder the munge user can write
mkdir -p "$DIR"/{state,spool,log}

stop() {
  local pidfile pid
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid" "$MUNGED_PID"; do
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
  done
}
if [ "$ACTION" = down ]; then stop; exit 0; fi

slurm_conf() {
  cat <<CONF
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
}
gres_conf() {
  cat <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
NodeName=localhost Name=gpu File=/dev/zero
CONF
}

# ours NAME BODY: succeeds if $ETC/NAME is absent or was written by this script.
ours() {
  local path="$ETC/$1"
  [ -e "$path" ] || [ -L "$path" ] || return 0
  if [ -f "$path" ] && [ ! -L "$path" ]; then
    [ "$(head -n 1 "$path")" = "$MARK" ] && return 0
    [ "$(cat "$path")" = "$2" ] && return 0  # written by an earlier version of this script
  fi
  echo "slurm_up.sh: $path exists and was not written by this script: not touching it" \
    "(move it away to use the test cluster)" >&2
  return 1
}

# put NAME BODY: write $ETC/NAME = MARK + BODY; CHANGED=1 if the settings themselves changed.
put() {
  local path="$ETC/$1" old=""
  [ -f "$path" ] && old=$(grep -vxF "$MARK" "$path" || true)
  [ "$old" = "$2" ] || CHANGED=1
  if [ "$(cat "$path" 2>/dev/null)" != "$MARK"$'\n'"$2" ]; then
    printf '%s\n%s\n' "$MARK" "$2" >"$path.emotf-new"
    mv -f "$path.emotf-new" "$path"
  fi
}

SLURM_CONF=$(slurm_conf)
GRES_CONF=$(gres_conf)
ours slurm.conf "$SLURM_CONF" && ours gres.conf "$GRES_CONF" || exit 1

if [ "$ACTION" != config ] && { ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; }; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi
# the package may create a key; an existing key is never replaced
if [ ! -e "$MUNGE_KEY" ] && [ ! -L "$MUNGE_KEY" ]; then
  mkdir -p "$(dirname "$MUNGE_KEY")"
  (umask 077 && dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" 2>/dev/null)
  if [ "$(id -u)" = 0 ] && id munge >/dev/null 2>&1; then chown munge:munge "$MUNGE_KEY"; fi
  chmod 400 "$MUNGE_KEY"
fi

CHANGED=0
mkdir -p "$ETC"
put slurm.conf "$SLURM_CONF"
put gres.conf "$GRES_CONF"
if [ "$ACTION" = config ]; then exit 0; fi

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
usable() { sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'; }

if [ "$CHANGED" = 0 ] && alive slurmctld && alive slurmd && usable; then
  echo "SLURM already up: $(sinfo -h -o '%P %T' | tr '\n' ' ')"
  exit 0
fi

stop
for daemon in slurmctld slurmd; do
  if pgrep -x "$daemon" >/dev/null; then
    echo "slurm_up.sh: a $daemon not started by this script is running: not touching it" >&2
    exit 1
  fi
done
mkdir -p /run/munge && chown munge:munge /run/munge
if ! { munge -n </dev/null | unmunge >/dev/null; } 2>/dev/null; then
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$MUNGED_PID" || /usr/sbin/munged --force
fi
/usr/sbin/slurmctld -i
/usr/sbin/slurmd -N localhost
for _ in $(seq 1 30); do
  if usable; then
    echo "SLURM up: $(sinfo -h -o '%P %T' | tr '\n' ' ')"
    exit 0
  fi
  sleep 1
done
echo "SLURM did not come up; see $DIR/log" >&2
exit 1
