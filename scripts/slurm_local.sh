#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian's slurmctld, slurmd, munge): the tests' cluster.
#
#   scripts/slurm_local.sh start    install the packages when missing (root), write slurm.conf for
#                                   this host, start munged, slurmctld, slurmd; wait for the node idle
#   scripts/slurm_local.sh status   sinfo and squeue; exit 0 when the node answers, 1 otherwise
#   scripts/slurm_local.sh stop     cancel the jobs left, stop the three daemons
#   scripts/slurm_local.sh env      the line to paste into a shell: export SLURM_CONF=...
#
# Everything it writes lives in $SLURM_LOCAL_DIR (default /tmp/siamese_lit_slurm): slurm.conf,
# munge's key and socket, the daemons' state, logs (log/) and the job completion log (jobcomp.txt,
# what `sacct -c` reads: there is no slurmdbd). Clients find the config through SLURM_CONF; when
# /etc/slurm/slurm.conf does not exist, `start` also links it there, so plain `sinfo` works.
# Ports: SLURM_LOCAL_CTLD_PORT (6817) and SLURM_LOCAL_SLURMD_PORT (6818).
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/siamese_lit_slurm}"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
CONF="$DIR/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client munge)
export SLURM_CONF="$CONF"

die() { echo "error: $*" >&2; exit 2; }
say() { echo "slurm_local: $*"; }

install_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd sbatch; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "${missing[*]} not installed; as root: apt-get install ${PACKAGES[*]} (or run this script as root)"
    fi
    command -v apt-get >/dev/null || die "${missing[*]} not installed and no apt-get: install SLURM and munge"
    say "installing ${PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -N -o %T 2>/dev/null | head -1; }

write_conf() {
    # the node as slurmd sees this machine: its real CPUs, sockets, cores, threads and memory
    local node host cpus mem
    node="$(slurmd -C | head -1)"
    host="$(hostname -s)"
    case "$node" in NodeName=*) ;; *) die "slurmd -C did not describe this node: $node" ;; esac
    cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")"
    mem="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")"
    cat >"$CONF" <<EOF
# written by scripts/slurm_local.sh for $host; rewritten on each start
ClusterName=siamese_lit
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/slurmd
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# no cgroups needed: processes are tracked through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job that gives no --mem gets its CPUs' share of the memory, not the whole node
DefMemPerCPU=$((mem / cpus))
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# no slurmdbd: finished jobs go to a text file, which sacct reads with -c (--completion)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
JobAcctGatherType=jobacct_gather/linux
# how long finished jobs stay in squeue/scontrol (s)
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    pid_alive "$DIR/munge/munged.pid" && return 0
    if [ ! -s "$DIR/munge/munge.key" ]; then
        head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
        chmod 600 "$DIR/munge/munge.key"
    fi
    munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" ||
        die "munged did not start: see $DIR/log/munged.log"
}

wait_idle() {
    local state=""
    for _ in $(seq 1 60); do
        state="$(node_state)"
        case "$state" in
            idle | mixed | allocated) return 0 ;;
            down* | drain*) scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    die "the node is not idle after 60 s (state: ${state:-no answer}); see $DIR/log/slurmctld.log and slurmd.log"
}

start() {
    install_packages
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && pid_alive "$DIR/munge/munged.pid"; then
        wait_idle
        say "already running ($CONF)"
        return 0
    fi
    stop_daemons
    mkdir -p "$DIR/munge" "$DIR/ctld" "$DIR/slurmd" "$DIR/log"
    chmod 700 "$DIR/munge"
    write_conf
    if [ ! -e "$SYSTEM_CONF" ] && [ -w "$(dirname "$SYSTEM_CONF")" ]; then ln -s "$CONF" "$SYSTEM_CONF"; fi
    start_munge
    # -c: a clean start (no jobs kept from an earlier cluster in $DIR); job ids start again at 1, so
    # the completion log of the earlier cluster is kept aside as jobcomp.txt.old
    if [ -s "$DIR/jobcomp.txt" ]; then mv "$DIR/jobcomp.txt" "$DIR/jobcomp.txt.old"; fi
    slurmctld -c || die "slurmctld did not start: see $DIR/log/slurmctld.log"
    slurmd || die "slurmd did not start: see $DIR/log/slurmd.log"
    wait_idle
    say "node $(hostname -s) idle; export SLURM_CONF=$CONF"
    sinfo
}

stop_pid() {
    local file="$1"
    pid_alive "$file" || return 0
    local pid
    pid="$(cat "$file")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
}

stop_daemons() {
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    stop_pid "$DIR/munge/munged.pid"
}

stop() {
    if pid_alive "$DIR/slurmctld.pid"; then
        local jobs
        jobs="$(squeue -h -o %A 2>/dev/null || true)"
        if [ -n "$jobs" ]; then
            say "cancelling jobs $(echo "$jobs" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            scancel $jobs || true
            for _ in $(seq 1 30); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 1; done
        fi
    fi
    stop_daemons
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then rm -f "$SYSTEM_CONF"; fi
    say "stopped"
}

status() {
    if ! pid_alive "$DIR/slurmctld.pid" || ! pid_alive "$DIR/slurmd.pid"; then
        say "not running (no daemons under $DIR)"
        return 1
    fi
    sinfo && squeue
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 start|stop|status|env" ;;
esac
