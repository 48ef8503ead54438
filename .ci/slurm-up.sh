#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian, run as root).
#
# Idempotent: installs slurm-wlm and munge only when missing, writes
# /etc/slurm/slurm.conf for this host (real CPUs and memory from `slurmd -C`),
# starts munged, slurmctld and slurmd by hand (no systemd), restarts them only
# when the configuration changed, then waits for the node to be idle and runs
# one test batch job. Prints the daemon logs and exits non-zero on failure.
#
# Partitions: `cpu` (default) and `gpu`, both on this node, so that per-rule
# `slurm_partition: gpu` requests are valid. The node also has one stand-in GPU
# (GRES gpu:1 backed by /dev/null, no device) so that `gpu: 1` / `--gpus=1`
# requests can be scheduled; jobs get CUDA_VISIBLE_DEVICES=0 but no CUDA.
# No accounting database: use `--slurm-status-command squeue` with Snakemake.
#
# Environment knobs (all optional):
#   SLURM_UP_MEM_FRACTION  share of the memory slurmd reports given to jobs (default 0.9)
#   SLURM_UP_FAKE_GPUS     stand-in GPUs on the node, 0 or 1 (default 1)
#   SLURM_UP_TIMEOUT       seconds to wait for each readiness step (default 120)
set -euo pipefail

readonly CONF_DIR=/etc/slurm
readonly CONF="$CONF_DIR/slurm.conf"
readonly GRES_CONF="$CONF_DIR/gres.conf"
readonly LOG_DIR=/var/log/slurm
readonly CTLD_SPOOL=/var/spool/slurmctld
readonly SLURMD_SPOOL=/var/spool/slurmd
readonly RUN_DIR=/run/slurm
readonly CTLD_PID="$RUN_DIR/slurmctld.pid"
readonly SLURMD_PID="$RUN_DIR/slurmd.pid"
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MEM_FRACTION="${SLURM_UP_MEM_FRACTION:-0.9}"
readonly FAKE_GPUS="${SLURM_UP_FAKE_GPUS:-1}"
readonly TIMEOUT="${SLURM_UP_TIMEOUT:-120}"
[[ $FAKE_GPUS == 0 || $FAKE_GPUS == 1 ]] || { echo "SLURM_UP_FAKE_GPUS must be 0 or 1, got '$FAKE_GPUS'" >&2; exit 2; }

START_S=$(date +%s)
log() { echo "[slurm-up +$(( $(date +%s) - START_S ))s] $*" >&2; }

diagnose() {
    echo "===== slurm-up diagnostics =====" >&2
    for f in /var/log/munge/munged.log "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
        if [[ -f $f ]]; then
            echo "----- tail -n 40 $f -----" >&2
            tail -n 40 "$f" >&2 || true
        else
            echo "----- $f: missing -----" >&2
        fi
    done
    echo "----- processes -----" >&2
    ps -eo pid,user,args | grep -E '[m]unged|[s]lurmctld|[s]lurmd' >&2 || echo "(no munged/slurm daemons)" >&2
    if command -v sinfo >/dev/null 2>&1; then
        echo "----- sinfo -R / scontrol show node -----" >&2
        timeout 10 sinfo -R >&2 || true
        timeout 10 scontrol show node >&2 || true
    fi
}

fail() {
    log "ERROR: $*"
    diagnose
    exit 1
}

# Poll a command until it succeeds or TIMEOUT seconds pass.
wait_for() {
    local what=$1; shift
    local deadline=$(( $(date +%s) + TIMEOUT ))
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || fail "timed out after ${TIMEOUT}s waiting for: $what"
        sleep 1
    done
}

# True when the pid in file $1 is alive and runs a program named $2.
pid_alive() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

# Stop the daemon whose pid is in file $1 (a program named $2), if alive.
stop_daemon() {
    local pidfile=$1 name=$2 pid i
    pid_alive "$pidfile" "$name" || return 0
    pid=$(<"$pidfile")
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    kill -9 "$pid" 2>/dev/null || true
}

[[ $(id -u) -eq 0 ]] || fail "must run as root (it installs packages and starts daemons)"

# ---------------------------------------------------------------- packages --
install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting the daemons with a default config.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made_policy=1
    fi
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        log "apt-get update (no package list for slurm-wlm yet)"
        apt-get update -qq
    fi
    log "apt-get install slurm-wlm munge"
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/tmp/slurm-up-apt.log 2>&1; then
        log "install failed; retrying after apt-get update"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >>/tmp/slurm-up-apt.log 2>&1 \
            || { tail -n 30 /tmp/slurm-up-apt.log >&2; (( made_policy )) && rm -f "$policy"; fail "apt-get install slurm-wlm munge failed"; }
    fi
    (( made_policy )) && rm -f "$policy"
    return 0
}

missing=0
for tool in munged munge unmunge slurmctld slurmd sbatch sinfo squeue scontrol; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
done
if (( missing )); then
    install_packages
else
    log "slurm-wlm and munge already installed"
fi

# ------------------------------------------------------------------- munge --
id munge >/dev/null 2>&1 || fail "user 'munge' missing after installing munge"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s $MUNGE_KEY ]]; then
    log "creating munge key $MUNGE_KEY"
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
fi
chown munge:munge "$MUNGE_KEY"
chmod 0400 "$MUNGE_KEY"

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
    log "munged already running"
else
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
    wait_for "munged to answer (munge -n | unmunge)" munge_ok
fi

# ------------------------------------------------------------ slurm.conf --
node=$(hostname -s)
[[ -n $node ]] || fail "hostname -s is empty"
# `slurmd -C` prints e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24036"
hw=$(slurmd -C 2>/dev/null | head -n 1) || true
[[ $hw == NodeName=* ]] || fail "slurmd -C gave no node line: '$hw'"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(field CPUs); boards=$(field Boards); sockets=$(field SocketsPerBoard)
cores=$(field CoresPerSocket); threads=$(field ThreadsPerCore); mem=$(field RealMemory)
for v in cpus boards sockets cores threads mem; do
    [[ -n ${!v} ]] || fail "could not read $v from slurmd -C: '$hw'"
done
job_mem=$(awk -v m="$mem" -v f="$MEM_FRACTION" 'BEGIN { printf "%d", m * f }')

node_gres=""
gres_line="# no GRES"
if (( FAKE_GPUS )); then
    node_gres=" Gres=gpu:1"
    gres_line="NodeName=$node Name=gpu File=/dev/null"
fi

new_conf=$(mktemp)
new_gres=$(mktemp)
trap 'rm -f "$new_conf" "$new_gres"' EXIT
printf '# Written by .ci/slurm-up.sh (stand-in GPUs: %s, no device behind them).\n%s\n' "$FAKE_GPUS" "$gres_line" >"$new_gres"
cat >"$new_conf" <<EOF
# Written by .ci/slurm-up.sh: one-node test cluster on $node. Do not edit by hand.
ClusterName=ihdm-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
GresTypes=gpu
# Scheduling: cores and memory are consumable.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No accounting database: the Snakemake plugin queries squeue, so finished
# jobs must stay visible to squeue for a while (MinJobAge, seconds).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
# Timers: a job over its time limit is killed promptly (state TIMEOUT).
InactiveLimit=0
KillWait=5
OverTimeLimit=0
SlurmctldTimeout=60
SlurmdTimeout=300
Waittime=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$job_mem$node_gres State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF

install -d -m 0755 "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL" "$RUN_DIR"
conf_changed=0
if ! cmp -s "$new_conf" "$CONF"; then
    log "writing $CONF (node $node: CPUs=$cpus RealMemory=$job_mem of ${mem} MB)"
    install -m 0644 "$new_conf" "$CONF"
    conf_changed=1
else
    log "$CONF is up to date"
fi
if ! cmp -s "$new_gres" "$GRES_CONF"; then
    log "writing $GRES_CONF (stand-in GPUs: $FAKE_GPUS)"
    install -m 0644 "$new_gres" "$GRES_CONF"
    conf_changed=1
fi

# ----------------------------------------------------------------- daemons --
if (( conf_changed )); then
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
fi

if pid_alive "$CTLD_PID" slurmctld; then
    log "slurmctld already running (pid $(<"$CTLD_PID"))"
else
    log "starting slurmctld"
    slurmctld || fail "slurmctld did not start"
fi
ctld_up() { scontrol ping | grep -q 'is UP'; }
wait_for "slurmctld to answer (scontrol ping)" ctld_up

if pid_alive "$SLURMD_PID" slurmd; then
    log "slurmd already running (pid $(<"$SLURMD_PID"))"
else
    log "starting slurmd"
    slurmd || fail "slurmd did not start"
fi

node_state() { sinfo -h -n "$node" -N -o '%T' 2>/dev/null | head -n 1; }
node_ready() {
    case "$(node_state)" in
        idle|mixed|allocated|completing) return 0 ;;
        *) return 1 ;;
    esac
}
deadline=$(( $(date +%s) + TIMEOUT ))
until node_ready; do
    state=$(node_state)
    case "$state" in
        down*|drain*|drained*|fail*)
            # A node left down or drained by an earlier run: put it back.
            scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    (( $(date +%s) < deadline )) || fail "node $node not ready after ${TIMEOUT}s (state '$state')"
    sleep 1
done
log "node $node is $(node_state)"

# ---------------------------------------------------------------- smoke test --
sbatch --test-only -p gpu --wrap true >/dev/null 2>&1 || fail "partition 'gpu' rejects a job (sbatch --test-only -p gpu)"
if (( FAKE_GPUS )); then
    sbatch --test-only -p gpu --gpus=1 --wrap true >/dev/null 2>&1 \
        || fail "a stand-in GPU request is rejected (sbatch --test-only -p gpu --gpus=1)"
fi
out=$(mktemp /tmp/slurm-up-job.XXXXXX)
log "submitting test job (sbatch --wait --wrap hostname)"
if ! timeout "$TIMEOUT" sbatch --wait --quiet -p cpu -t 1 --mem 10 -o "$out" --wrap 'echo "$SLURM_JOB_ID $(hostname -s)"'; then
    cat "$out" >&2 2>/dev/null || true
    fail "test job did not complete"
fi
read -r job_id job_host <"$out" || true
rm -f "$out"
[[ $job_id =~ ^[0-9]+$ && $job_host == "$node" ]] || fail "test job wrote '$job_id $job_host', expected '<jobid> $node'"
log "test job $job_id ran on $job_host"

sinfo >&2
log "SLURM cluster ready in $(( $(date +%s) - START_S ))s"
