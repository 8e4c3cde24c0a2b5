#!/usr/bin/env bash
# A one-host Grid Engine for the SGE tests: Debian's gridengine-* packages,
# installed, configured and started without questions. Safe to run again: on a
# running, configured cluster it changes nothing (about 2 s).
#
# Needs root and apt-get. What it does, and why, is in ../shared/SGE-NOTES.md
# (each pitfall named there is handled here).
#
# Environment:
#   SGE_SLOTS (4)             slots of all.q and q_1day
#   SGE_GPU_SLOTS (2)         slots of q_short_gpu
#   SGE_GPUS (2)              the host's `gpu` consumable
#   SGE_PROJECTS (testproject) projects to create, space or comma separated
#   SGE_FIX_ETC_HOSTS (1)     0 leaves /etc/hosts alone (host_aliases only)
set -euo pipefail

SLOTS=${SGE_SLOTS:-4}
GPU_SLOTS=${SGE_GPU_SLOTS:-2}
GPUS=${SGE_GPUS:-2}
PROJECTS=${SGE_PROJECTS:-testproject}
FIX_HOSTS=${SGE_FIX_ETC_HOSTS:-1}
HOST=$(hostname)
CELL=/var/lib/gridengine/default
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { echo "gridengine: $*"; }
die() { echo "gridengine: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts daemons)"
command -v apt-get >/dev/null 2>&1 || die "needs apt-get (Debian's gridengine packages)"

# A pid is alive unless it is gone or a zombie (PID 1 here reaps late).
alive() {
    local pid=$1 state
    [ -r "/proc/$pid/stat" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$state" != Z ]
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

# 0. Host resolution: Grid Engine compares the reverse lookup of a peer's
# address with the name it claims, so this host's address must resolve back
# to its own name, not to `localhost` (pitfall 1).
if [ "$FIX_HOSTS" != 0 ]; then
    addr=$(getent hosts "$HOST" | awk '{print $1; exit}')
    back=$(getent hosts "${addr:-127.0.0.1}" | awk '{print $2; exit}')
    if [ "$back" != "$HOST" ]; then
        say "/etc/hosts: ${addr:-127.0.0.1} resolved back to '$back'; putting '127.0.0.1 $HOST' first"
        { echo "127.0.0.1 $HOST"; grep -v "^127\.0\.0\.1[[:space:]]\+$HOST\$" /etc/hosts; } > "$work/hosts"
        cat "$work/hosts" > /etc/hosts
    fi
fi

# 1. Packages, with debconf's questions answered beforehand.
if ! command -v qconf >/dev/null 2>&1 || [ ! -x /usr/sbin/sge_qmaster ] || [ ! -x /usr/sbin/sge_execd ]; then
    say "installing gridengine-master, gridengine-exec, gridengine-client"
    if ! command -v debconf-set-selections >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debconf >/dev/null
    fi
    for o in gridengine-common gridengine-client gridengine-master gridengine-exec; do
        echo "$o shared/gridengineconfig boolean true"
        echo "$o shared/gridenginecell string default"
        echo "$o shared/gridenginemaster string $HOST"
    done | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gridengine-master gridengine-exec gridengine-client >/dev/null
fi
[ -d "$CELL/common" ] || die "$CELL/common is missing: the package's init_cluster did not run (see apt's output)"

# 2. Cell files, before qmaster's first start (it would call itself localhost).
if ! grep -qs "^$HOST localhost\$" "$CELL/common/host_aliases"; then
    echo "$HOST localhost" > "$CELL/common/host_aliases"
fi
if [ "$(cat "$CELL/common/act_qmaster" 2>/dev/null)" != "$HOST" ]; then
    echo "$HOST" > "$CELL/common/act_qmaster"
fi
chown sgeadmin: "$CELL/common/host_aliases" "$CELL/common/act_qmaster" 2>/dev/null || true

# 3. qmaster, started directly: Debian's init scripts neither detect nor stop
# the 8.1.9 daemons (pitfall 3), and there is no systemd.
qmaster_pid=/var/spool/gridengine/qmaster/qmaster.pid
if [ -r "$qmaster_pid" ] && alive "$(cat "$qmaster_pid")" && qconf -sh >/dev/null 2>&1; then
    :
else
    say "starting sge_qmaster"
    /usr/sbin/sge_qmaster
    wait_for 60 qconf -sh || die "sge_qmaster did not answer within 60 s (see /var/spool/gridengine/qmaster/messages)"
fi

# 4. Configuration, from files: -A when missing, -M when present.
# Global: root may run jobs (pitfall 6); accounting is written at once (pitfall 9).
qconf -sconf | grep -v '^#' | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' > "$work/conf"
awk -v OFS=' ' '
    $1 == "min_uid" { $0 = "min_uid 0" }
    $1 == "min_gid" { $0 = "min_gid 0" }
    $1 == "reporting_params" {
        line = ""
        for (i = 2; i <= NF; i++) if ($i !~ /^accounting_flush_time=/) line = line " " $i
        $0 = "reporting_params" line " accounting_flush_time=00:00:00"
    }
    { print }' "$work/conf" > "$work/global"
if ! cmp -s <(tr -s ' \t' ' ' < "$work/conf") <(tr -s ' \t' ' ' < "$work/global"); then
    qconf -Mconf "$work/global" >/dev/null 2>&1 || die "qconf -Mconf failed"
fi

# Scheduler: every second, not every 15 (pitfall 8).
qconf -ssconf > "$work/sched"
awk '
    $1 == "schedule_interval" { $0 = "schedule_interval 0:0:1" }
    $1 == "flush_submit_sec" { $0 = "flush_submit_sec 1" }
    $1 == "flush_finish_sec" { $0 = "flush_finish_sec 1" }
    $1 == "job_load_adjustments" { $0 = "job_load_adjustments NONE" }
    $1 == "load_adjustment_decay_time" { $0 = "load_adjustment_decay_time 0:0:0" }
    $1 == "schedd_job_info" { $0 = "schedd_job_info true" }
    $1 == "queue_sort_method" { $0 = "queue_sort_method seqno" }
    { print }' "$work/sched" > "$work/sched.new"
if ! cmp -s <(tr -s ' \t' ' ' < "$work/sched") <(tr -s ' \t' ' ' < "$work/sched.new"); then
    qconf -Msconf "$work/sched.new" >/dev/null 2>&1 || die "qconf -Msconf failed"
fi

qconf -as "$HOST" >/dev/null 2>&1

# Complexes: io_big and gpu, and a BOOL per Idiap queue name, which bob's
# `-l …,<queue>=TRUE` requests.
qconf -sc > "$work/complex"
cp "$work/complex" "$work/complex.new"
grep -q '^io_big ' "$work/complex" || echo "io_big io_big BOOL == YES NO FALSE 0" >> "$work/complex.new"
grep -q '^gpu ' "$work/complex" || echo "gpu gpu INT <= YES YES 0 0" >> "$work/complex.new"
for q in q_1day q_1week q_gpu q_short_gpu q_long_gpu; do
    grep -q "^$q " "$work/complex" || echo "$q $q BOOL == YES NO FALSE 0" >> "$work/complex.new"
done
if ! cmp -s "$work/complex" "$work/complex.new"; then
    qconf -Mc "$work/complex.new" >/dev/null 2>&1 || die "qconf -Mc failed"
fi

# Apply an object from a file: add it when missing, else modify it.
apply() {
    local kind=$1 name=$2 file=$3
    if qconf "-s$kind" "$name" >/dev/null 2>&1; then
        qconf "-M$kind" "$file" >/dev/null 2>&1 || die "qconf -M$kind $name failed: $(qconf "-M$kind" "$file" 2>&1)"
    else
        qconf "-A$kind" "$file" >/dev/null 2>&1 || die "qconf -A$kind $name failed: $(qconf "-A$kind" "$file" 2>&1)"
    fi
}

cat > "$work/exechost" <<EOF
hostname $HOST
load_scaling NONE
complex_values io_big=TRUE,gpu=$GPUS
user_lists NONE
xuser_lists NONE
projects NONE
xprojects NONE
usage_scaling NONE
report_variables NONE
EOF
apply e "$HOST" "$work/exechost"

printf 'group_name @allhosts\nhostlist %s\n' "$HOST" > "$work/hgrp"
apply hgrp @allhosts "$work/hgrp"

cat > "$work/pe" <<'EOF'
pe_name            smp
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
apply p smp "$work/pe"

for p in ${PROJECTS//,/ }; do
    printf 'name %s\noticket 0\nfshare 0\nacl NONE\nxacl NONE\n' "$p" > "$work/prj"
    apply prj "$p" "$work/prj"
done

# Queues from the template, made usable (pitfall 7): existing PEs only, no load
# alarms on a busy 2-core box, `#!` lines honoured.
qconf -sq > "$work/template"
queue() {
    local name=$1 slots=$2 h_rt=$3 seq=$4 complexes=$5
    awk -v name="$name" -v slots="$slots" -v h_rt="$h_rt" -v seq="$seq" -v cx="$complexes" '
        $1 == "qname" { $0 = "qname " name }
        $1 == "hostlist" { $0 = "hostlist @allhosts" }
        $1 == "seq_no" { $0 = "seq_no " seq }
        $1 == "load_thresholds" { $0 = "load_thresholds NONE" }
        $1 == "pe_list" { $0 = "pe_list smp" }
        $1 == "slots" { $0 = "slots " slots }
        $1 == "h_rt" { $0 = "h_rt " h_rt }
        $1 == "shell" { $0 = "shell /bin/bash" }
        $1 == "shell_start_mode" { $0 = "shell_start_mode unix_behavior" }
        $1 == "complex_values" { $0 = "complex_values " cx }
        { print }' "$work/template" > "$work/q_$name"
    apply q "$name" "$work/q_$name"
}
queue all.q "$SLOTS" INFINITY 0 NONE
queue q_1day "$SLOTS" 24:00:00 10 q_1day=TRUE
queue q_short_gpu "$GPU_SLOTS" 01:00:00 20 q_short_gpu=TRUE

# 5. execd, then wait until the host reports load and no queue is unknown (u).
execd_up() {
    local f
    for f in /var/spool/gridengine/execd/*/execd.pid; do
        [ -r "$f" ] && alive "$(cat "$f")" && return 0
    done
    return 1
}
if ! execd_up; then
    say "starting sge_execd"
    /usr/sbin/sge_execd
fi
host_ready() {
    qhost -h "$HOST" | awk -v h="$HOST" '$1 == h && $4 != "-" { ok = 1 } END { exit !ok }' &&
        ! qstat -f | awk 'NR > 2 && NF >= 6 && $6 ~ /u/ { bad = 1 } END { exit !bad }'
}
wait_for 60 host_ready || die "sge_execd on $HOST did not report within 60 s (qhost; qstat -f; /var/spool/gridengine/execd/*/messages)"
say "ready: $(qstat -f | awk 'NR > 2 && $1 ~ /@/ {printf "%s%s %s", sep, $1, $3; sep = ", "}')"
