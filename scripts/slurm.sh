#!/usr/bin/env bash
# A one-host Slurm for the Slurm tests: Debian's slurm-wlm and munge, with
# slurmdbd and MariaDB for `sacct`, configured and started without systemd.
# Safe to run again: on a running, configured cluster it changes nothing
# (about 1 s). Why each step is there: ../shared/SLURM-NOTES.md.
#
# Two slurmd run on this host: node $HOST (partition `cpu`, the default) and
# node $HOST-gpu (partition `gpu`, with two fake GPUs as `gres/gpu`). With one
# node in both partitions, a job waiting in one blocks the other.
#
# Needs root and apt-get.
#
# Usage: slurm.sh [start|status|stop]
#
# Environment:
#   SLURM_CPUS (8)             CPUs of node $HOST (more than the host has, on purpose)
#   SLURM_GPU_CPUS (4)         CPUs of node $HOST-gpu
#   SLURM_GPUS (2)             fake GPUs of node $HOST-gpu
#   SLURM_ACCOUNTING (1)       0: no slurmdbd, no MariaDB, no sacct
#   SLURM_ACCOUNTS (testproject) accounts to create, space or comma separated
#   SLURM_USERS (root)         users given an association with each account
#   SLURM_DB_PASS (slurmdbpass) slurmdbd's MariaDB password (local only)
#   SLURM_MIN_JOB_AGE (300)    seconds a finished job stays in squeue/scontrol
#   SLURM_KILL_WAIT (5)        seconds between SIGTERM and SIGKILL
set -euo pipefail

CPUS=${SLURM_CPUS:-8}
GPU_CPUS=${SLURM_GPU_CPUS:-4}
GPUS=${SLURM_GPUS:-2}
ACCOUNTING=${SLURM_ACCOUNTING:-1}
ACCOUNTS=${SLURM_ACCOUNTS:-testproject}
USERS=${SLURM_USERS:-root}
DB_PASS=${SLURM_DB_PASS:-slurmdbpass}
MIN_JOB_AGE=${SLURM_MIN_JOB_AGE:-300}
KILL_WAIT=${SLURM_KILL_WAIT:-5}
HOST=$(hostname)
NODES="$HOST $HOST-gpu"
LOG=/var/log/slurm/setup.log
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { echo "slurm: $*"; }
die() { echo "slurm: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts daemons)"

# A pid file names a live process of that name (not gone, not a zombie).
running() {
    local pidfile=$1 name=$2 pid state
    [ -r "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

# Wait up to $1 seconds for the command in the other arguments to succeed.
wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

# Whether node $1 can take jobs: idle, mix, alloc or comp, and responding.
node_ready() {
    case "$(sinfo -h -n "$1" -o %t 2>/dev/null | head -n1)" in
        idle | mix | alloc | comp) return 0 ;;
        *) return 1 ;;
    esac
}

stop_daemon() {
    local pidfile=$1 name=$2 pid
    running "$pidfile" "$name" || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    wait_for 20 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
}

stop_all() {
    for n in $NODES; do stop_daemon "/run/slurm/slurmd-$n.pid" slurmd; done
    stop_daemon /run/slurm/slurmctld.pid slurmctld
    stop_daemon /run/slurm/slurmdbd.pid slurmdbd
}

status() {
    running /run/munge/munged.pid munged || { echo "munged is not running"; return 1; }
    running /run/slurm/slurmctld.pid slurmctld || { echo "slurmctld is not running"; return 1; }
    scontrol ping 2>/dev/null | grep -q 'is UP' || { echo "slurmctld does not answer"; return 1; }
    for n in $NODES; do
        running "/run/slurm/slurmd-$n.pid" slurmd || { echo "slurmd $n is not running"; return 1; }
        node_ready "$n" || { echo "node $n cannot take jobs: $(sinfo -h -n "$n" -o '%t %E')"; return 1; }
    done
    if [ "$ACCOUNTING" != 0 ]; then
        running /run/slurm/slurmdbd.pid slurmdbd || { echo "slurmdbd is not running"; return 1; }
    fi
    echo "slurm: ready: $(sinfo -h -o '%P %t %C' | tr '\n' ';')"
}

case "${1:-start}" in
    start) ;;
    status) status; exit ;;
    stop) stop_all; exit 0 ;;
    *) die "usage: $0 [start|status|stop]" ;;
esac

command -v apt-get >/dev/null 2>&1 || die "needs apt-get (Debian's slurm-wlm packages)"

# 0. The host name must resolve (SlurmctldHost, NodeAddr).
if ! getent hosts "$HOST" >/dev/null; then
    say "/etc/hosts: adding 127.0.0.1 $HOST"
    echo "127.0.0.1 $HOST" >> /etc/hosts
fi

# 1. Packages. Their postinst starts nothing without systemd.
packages="slurmctld slurmd slurm-client munge"
[ "$ACCOUNTING" != 0 ] && packages="$packages slurmdbd mariadb-server"
missing=""
for p in $packages; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends $missing >/dev/null
fi
install -d -o slurm -g slurm /run/slurm /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld
for n in $NODES; do install -d -o root -g root "/var/lib/slurm/slurmd-$n"; done

# 2. munge: its key, its run folder, the daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge: /etc/munge /etc/munge/munge.key
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
if ! running /run/munge/munged.pid munged; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
wait_for 10 bash -c 'munge -n | unmunge' || die "munge does not work (see /var/log/munge/munged.log)"

# 3. Fake GPUs: gres/gpu needs device files (a GPU without File= is dropped,
# and plain files are refused), so symlinks to /dev/null.
install -d /var/lib/slurm/fakegpu
for i in $(seq 0 $((GPUS - 1))); do
    [ -L "/var/lib/slurm/fakegpu/gpu$i" ] || ln -sf /dev/null "/var/lib/slurm/fakegpu/gpu$i"
done

# 4. Configuration, built here and installed only when it differs (then the
# daemons restart).
mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.98)}' /proc/meminfo)
{
    echo "# Written by scripts/slurm.sh: a one-host Slurm for tests. Edits are overwritten."
    echo "ClusterName=ci"
    echo "SlurmctldHost=$HOST"
    echo "SlurmUser=slurm"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "MpiDefault=none"
    echo "SwitchType=switch/none"
    echo "# No cgroups: jobs are tracked through /proc, and no CPU binding."
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/linux"
    echo "JobAcctGatherFrequency=30"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core_Memory"
    echo "DefMemPerCPU=1024"
    echo "# Nodes advertise the CPUs below, whatever the hardware has."
    echo "SlurmdParameters=config_overrides"
    echo "SchedulerType=sched/backfill"
    echo "# A new batch job at the next 1 s tick, not up to 3 s later."
    echo "SchedulerParameters=batch_sched_delay=0,bf_interval=5"
    echo "# A job over a partition's limits is refused at submit, not left pending."
    echo "EnforcePartLimits=ALL"
    echo "JobSubmitPlugins=lua"
    echo "GresTypes=gpu"
    if [ "$ACCOUNTING" != 0 ]; then
        echo "AccountingStorageType=accounting_storage/slurmdbd"
        echo "AccountingStorageHost=localhost"
        echo "AccountingStorageEnforce=associations,limits,qos"
        echo "AccountingStorageTRES=gres/gpu"
    else
        echo "AccountingStorageType=accounting_storage/none"
    fi
    echo "JobCompType=jobcomp/filetxt"
    echo "JobCompLoc=/var/log/slurm/jobcomp.log"
    echo "MinJobAge=$MIN_JOB_AGE"
    echo "KillWait=$KILL_WAIT"
    echo "SlurmdTimeout=60"
    echo "ReturnToService=2"
    echo "StateSaveLocation=/var/lib/slurm/slurmctld"
    echo "SlurmctldPidFile=/run/slurm/slurmctld.pid"
    echo "SlurmctldLogFile=/var/log/slurm/slurmctld.log"
    echo "SlurmctldDebug=info"
    echo "SlurmdSpoolDir=/var/lib/slurm/slurmd-%n"
    echo "SlurmdPidFile=/run/slurm/slurmd-%n.pid"
    echo "SlurmdLogFile=/var/log/slurm/slurmd-%n.log"
    echo "SlurmdDebug=info"
    echo "# Ports: slurmctld 6817, slurmd 6818 and 6820, slurmdbd 6819."
    echo "NodeName=$HOST NodeHostname=$HOST NodeAddr=$HOST Port=6818 CPUs=$CPUS RealMemory=$mem State=UNKNOWN"
    echo "NodeName=$HOST-gpu NodeHostname=$HOST NodeAddr=$HOST Port=6820 CPUs=$GPU_CPUS RealMemory=$mem Gres=gpu:$GPUS Features=gpu State=UNKNOWN"
    echo "PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP"
    echo "PartitionName=gpu Nodes=$HOST-gpu DefaultTime=01:00:00 MaxTime=1-00:00:00 State=UP"
} > "$work/slurm.conf"
echo "NodeName=$HOST-gpu Name=gpu File=/var/lib/slurm/fakegpu/gpu[0-$((GPUS - 1))]" > "$work/gres.conf"
cat > "$work/job_submit.lua" <<'EOF'
-- Written by scripts/slurm.sh. A job that names no partition and asks for a
-- GPU (--gres=gpu:N, --gpus=N, --gpus-per-*, or --constraint=gpu) goes to
-- partition "gpu"; any other job to the default partition "cpu".
local function wants_gpu(job_desc)
   for _, f in ipairs({"tres_per_node", "tres_per_job", "tres_per_task", "tres_per_socket"}) do
      local v = job_desc[f]
      if v ~= nil and string.find(v, "gpu", 1, true) then
         return true
      end
   end
   local c = job_desc.features
   return c ~= nil and string.find(c, "gpu", 1, true) ~= nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
   if job_desc.partition == nil and wants_gpu(job_desc) then
      job_desc.partition = "gpu"
   end
   return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   return slurm.SUCCESS
end

return slurm.SUCCESS
EOF
{
    echo "# Written by scripts/slurm.sh."
    echo "AuthType=auth/munge"
    echo "DbdHost=localhost"
    echo "SlurmUser=slurm"
    echo "StorageType=accounting_storage/mysql"
    echo "StorageHost=localhost"
    echo "StorageUser=slurm"
    echo "StoragePass=$DB_PASS"
    echo "StorageLoc=slurm_acct_db"
    echo "LogFile=/var/log/slurm/slurmdbd.log"
    echo "PidFile=/run/slurm/slurmdbd.pid"
    echo "DebugLevel=info"
} > "$work/slurmdbd.conf"

changed=0
install_conf() {
    local name=$1 mode=$2 owner=$3
    if ! cmp -s "$work/$name" "/etc/slurm/$name"; then
        install -D -m "$mode" -o "$owner" -g "$owner" "$work/$name" "/etc/slurm/$name"
        changed=1
    fi
}
install_conf slurm.conf 644 root
install_conf gres.conf 644 root
install_conf job_submit.lua 644 root
if [ "$ACCOUNTING" != 0 ]; then
    install_conf slurmdbd.conf 600 slurm
fi
if [ "$changed" = 1 ]; then
    say "configuration written: restarting the daemons"
    stop_all
fi

# 5. Accounting: MariaDB (its init script works without systemd; its output
# goes to a file, or a logger it leaves behind holds the caller's pipe), the
# database user, slurmdbd, the cluster, accounts and users.
if [ "$ACCOUNTING" != 0 ]; then
    if ! mysqladmin ping >/dev/null 2>&1; then
        say "starting MariaDB"
        /etc/init.d/mariadb start </dev/null >>"$LOG" 2>&1 || die "MariaDB did not start (see $LOG)"
    fi
    mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
        || die "MariaDB refused the slurm user"
    if ! running /run/slurm/slurmdbd.pid slurmdbd; then
        say "starting slurmdbd"
        /usr/sbin/slurmdbd
    fi
    wait_for 30 sacctmgr -n show cluster || die "slurmdbd does not answer (see /var/log/slurm/slurmdbd.log)"
    sacctmgr -n -P show cluster format=cluster | grep -qx ci || sacctmgr -i add cluster ci >/dev/null
    for a in ${ACCOUNTS//,/ }; do
        sacctmgr -n -P show account "$a" format=account | grep -qx "$a" \
            || sacctmgr -i add account "$a" Description="$a" Organization=ci >/dev/null
        for u in ${USERS//,/ }; do
            sacctmgr -n -P show assoc where user="$u" account="$a" format=user | grep -qx "$u" \
                || sacctmgr -i add user "$u" account="$a" >/dev/null
        done
    done
fi

# 6. The daemons, directly: slurmctld, then one slurmd per node.

if ! running /run/slurm/slurmctld.pid slurmctld; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
fi
wait_for 60 bash -c "scontrol ping | grep -q 'is UP'" \
    || die "slurmctld did not come up: $(tail -n 5 /var/log/slurm/slurmctld.log 2>/dev/null)"
for n in $NODES; do
    if ! running "/run/slurm/slurmd-$n.pid" slurmd; then
        say "starting slurmd $n"
        /usr/sbin/slurmd -N "$n"
    fi
done

# 7. Both nodes ready. A node found drained, down or invalid is resumed once
# (a drained node stays drained after it registers again).
for n in $NODES; do
    resumed=0
    deadline=$((SECONDS + 60))
    until node_ready "$n"; do
        state=$(sinfo -h -n "$n" -o %t 2>/dev/null | head -n1)
        case "$state" in
            drain* | drng* | down* | fail* | inval*)
                if [ "$resumed" = 0 ] && running "/run/slurm/slurmd-$n.pid" slurmd; then
                    scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        running "/run/slurm/slurmd-$n.pid" slurmd \
            || die "slurmd $n died: $(tail -n 5 "/var/log/slurm/slurmd-$n.log" 2>/dev/null)"
        [ $SECONDS -lt $deadline ] || die "node $n is not ready after 60 s: $(sinfo -h -n "$n" -o '%t %E')"
        sleep 0.2
    done
done

status
