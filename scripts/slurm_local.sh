#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/sweep/test_slurm.py and for trying
# `cl-bench sweep FILE --backend slurm` without a cluster. Debian/Ubuntu, as root: installs slurm-wlm
# and munge when missing, writes /etc/slurm/slurm.conf (only if absent or written by this script), starts
# munged, slurmctld and slurmd, and waits until the node takes jobs. Safe to run again: a cluster that
# already answers is left alone. No accounting database: `sacct` does not work here (cl-bench reads job
# states from squeue; see docs/cluster.md).
#
#   bash scripts/slurm_local.sh            # start (installing if needed)
#   bash scripts/slurm_local.sh stop       # stop the daemons it started
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by cl-bench scripts/slurm_local.sh"
LOGS=/var/log/slurm

die() { echo "slurm_local: $*" >&2; exit 1; }

if [[ "${1:-}" == "stop" ]]; then
    for d in slurmd slurmctld; do
        pid=$(pgrep -x "$d" || true)
        [[ -n "$pid" ]] && kill $pid
    done
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts system daemons)"

# A cluster that already answers with an idle or busy node: nothing to do.
if command -v sinfo >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q UP \
    && timeout 5 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    echo "slurm_local: a cluster is already up: $(sinfo -h -o '%P %D %T %C' | head -1)"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and there is no apt-get to install them"
    echo "slurm_local: installing slurm-wlm and munge"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null) \
        || die "apt-get install slurm-wlm munge failed"
fi

host=$(hostname -s)
cpus=$(nproc)
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem=$(( ${mem:-2048} * 9 / 10 ))  # leave the OS some room

if [[ -f "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    echo "slurm_local: keeping the existing $CONF (not written by this script)"
else
    mkdir -p /etc/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=clbench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# no accounting database: job states come from squeue
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# short waits so that cancelled and requeued jobs go quickly (tests)
KillWait=3
MinJobAge=300
SchedulerParameters=sched_interval=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd "$LOGS"

# munge: the authentication every SLURM daemon and command uses
if ! pgrep -x munged >/dev/null; then
    [[ -s /etc/munge/munge.key ]] || { mungekey --create 2>/dev/null || create-munge-key -f; }
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged || /usr/sbin/munged --force || die "munged did not start"
fi
munge -n | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge failed)"

pgrep -x slurmctld >/dev/null || slurmctld || die "slurmctld did not start; see $LOGS/slurmctld.log"
pgrep -x slurmd >/dev/null || slurmd || die "slurmd did not start; see $LOGS/slurmd.log"

for _ in $(seq 60); do
    state=$(timeout 5 sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in
    idle | mixed | allocated)
        echo "slurm_local: cluster up: partition debug, node $host, $cpus CPUs, ${mem} MB ($state)"
        exit 0
        ;;
    down* | drain*)
        scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
        ;;
    esac
    sleep 1
done
die "the node did not become idle within 60 s (state: ${state:-none}); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
