#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages: the tests' cluster.
#
#   scripts/slurm_local.sh start    install the packages when missing (as root), write slurm.conf for
#                                   this host (its real CPUs and memory), start munged, MariaDB,
#                                   slurmdbd, slurmctld and slurmd; wait until sinfo shows the node idle
#   scripts/slurm_local.sh status   sinfo and squeue; exit 0 when the cluster answers, 1 otherwise
#   scripts/slurm_local.sh stop     cancel the jobs left, stop the daemons
#   scripts/slurm_local.sh env      the line to paste into a shell: export SLURM_CONF=...
#
# Accounting is SLURM's own: slurmdbd on a MariaDB of its own, so `sacct` shows the jobs (submitit
# also watches its jobs' states with sacct). Everything it writes lives in $SLURM_LOCAL_DIR (default
# /tmp/siamese_lit_slurm): the configs, munge's key and socket, the database, the daemons' state and
# their logs (log/). Clients find the config through SLURM_CONF; when /etc/slurm/slurm.conf does not
# exist, `start` links it there, so a plain `sinfo` works too. Ports: SLURM_LOCAL_CTLD_PORT (6817),
# SLURM_LOCAL_SLURMD_PORT (6818), SLURM_LOCAL_DBD_PORT (6819), SLURM_LOCAL_DB_PORT (3307).
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/siamese_lit_slurm}"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
DBD_PORT="${SLURM_LOCAL_DBD_PORT:-6819}"
DB_PORT="${SLURM_LOCAL_DB_PORT:-3307}"
CONF="$DIR/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server mariadb-client)
export SLURM_CONF="$CONF"

die() { echo "error: $*" >&2; exit 2; }
say() { echo "slurm_local: $*"; }

install_packages() {
    local missing=()
    for cmd in munged slurmctld slurmd slurmdbd sbatch mariadbd mariadb-install-db mariadb; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
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
# a job asking for more than the node has is refused by sbatch, not left pending for ever
EnforcePartLimits=ALL
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# with slurmdbd this "password" is the munge socket its clients (sacct, sacctmgr) use
AccountingStoragePass=$DIR/munge/munge.socket.2
JobAcctGatherType=jobacct_gather/linux
# also a plain text line per finished job
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
# how long finished jobs stay in squeue/scontrol (s)
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

write_dbd_conf() {
    cat >"$DIR/slurmdbd.conf" <<EOF
# written by scripts/slurm_local.sh; rewritten on each start
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"
}

sql() { mariadb --no-defaults --socket="$DIR/db/mysqld.sock" -u root "$@"; }

start_db() {
    pid_alive "$DIR/db/mariadbd.pid" && return 0
    if [ ! -d "$DIR/db/data/mysql" ]; then
        mkdir -p "$DIR/db/data"
        mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$DIR/db/data" \
            --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed: see $DIR/log/mariadb-install.log"
    fi
    mariadbd --no-defaults --user="$(id -un)" --datadir="$DIR/db/data" --socket="$DIR/db/mysqld.sock" \
        --pid-file="$DIR/db/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
    for _ in $(seq 1 120); do
        if sql -e "SELECT 1" >/dev/null 2>&1; then
            sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
            return 0
        fi
        sleep 0.5
    done
    die "MariaDB did not start: see $DIR/log/mariadb.log"
}

start_dbd() {
    pid_alive "$DIR/slurmdbd.pid" && return 0
    # it reads slurmdbd.conf next to $SLURM_CONF
    slurmdbd || die "slurmdbd did not start: see $DIR/log/slurmdbd.log"
    for _ in $(seq 1 60); do
        timeout 10 sacctmgr -n list cluster >/dev/null 2>&1 && break
        sleep 0.5
    done
    # slurmdbd must know the cluster before slurmctld registers with it
    sacctmgr -n -P list cluster format=cluster | grep -qx siamese_lit ||
        timeout 20 sacctmgr -i add cluster siamese_lit >/dev/null ||
        die "slurmdbd does not answer: see $DIR/log/slurmdbd.log"
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
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && pid_alive "$DIR/slurmdbd.pid"; then
        wait_idle
        say "already running ($CONF)"
        return 0
    fi
    stop_daemons
    [ "$(id -u)" -eq 0 ] || die "slurmd runs as root: run $0 start as root"
    mkdir -p "$DIR/munge" "$DIR/ctld" "$DIR/slurmd" "$DIR/log" "$DIR/db"
    chmod 700 "$DIR/munge"
    write_conf
    write_dbd_conf
    if [ ! -e "$SYSTEM_CONF" ] && [ -w "$(dirname "$SYSTEM_CONF")" ]; then ln -s "$CONF" "$SYSTEM_CONF"; fi
    start_munge
    start_db
    start_dbd
    # its state (job ids go on from the last one) and the database are kept across stop/start
    slurmctld || die "slurmctld did not start: see $DIR/log/slurmctld.log"
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
    stop_pid "$DIR/slurmdbd.pid"
    stop_pid "$DIR/db/mariadbd.pid"
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
