#!/usr/bin/env bash
# Start a real single-node SLURM (Debian's slurm 22.05 + munge) on 127.0.0.1 for the test suite:
# one node with 2 CPUs and one GPU GRES, one partition, no slurmdbd, no systemd.
#
#   tests/slurm/start.sh STATE_DIR     (stop it with tests/slurm/stop.sh STATE_DIR)
#
# Installs slurmctld, slurmd, slurm-client and munge with apt-get when they are missing, then starts
# munged (own key and socket under STATE_DIR), slurmctld and slurmd directly and records their PIDs
# under STATE_DIR/pids, so that stop.sh ends exactly these processes. SLURM's job steps ignore
# SLURM_CONF, so the config must be /etc/slurm/slurm.conf (and gres.conf beside it): files there are
# backed up under STATE_DIR and restored by stop.sh; files that did not exist are removed again.
#
# Exit status: 0 = the cluster is up (prints KEY=VALUE lines: partition, node, gpus, cpus, memory);
# 77 = it cannot run here (not root, no apt, a SLURM already running, ports taken): the reason is on
# the last line of stderr, and nothing was changed; anything else = it should have started but did
# not (what was started is stopped again, the logs are named on stderr).
set -eEuo pipefail

SKIP=77
HERE="$(cd "$(dirname "$0")" && pwd)"
STATE="${1:-${SLURM_TEST_DIR:-/tmp/pipeline-slurm-test}}"
PARTITION="${SLURM_TEST_PARTITION:-snaketest}"
CTLD_PORT=6817
SLURMD_PORT=6818
PACKAGES=(slurmctld slurmd slurm-client munge)

skip() { echo "cannot start a test SLURM here: $*" >&2; exit "$SKIP"; }
say() { echo "[slurm-test] $*" >&2; }

[[ "$(id -u)" == 0 ]] || skip "needs root (installs packages, writes /etc/slurm, runs slurmd)"
command -v apt-get >/dev/null || [[ -x /usr/sbin/slurmctld ]] || skip "apt-get is not available to install ${PACKAGES[*]}"
running() { # is a process of this name alive (not a zombie waiting to be reaped)?
    local pid
    for pid in $(pgrep -x "$1"); do
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" =~ ^[^Z]$ ]] && return 0
    done
    return 1
}
for daemon in slurmctld slurmd; do
    if running "$daemon"; then skip "a $daemon is already running on this machine"; fi
done
for port in "$CTLD_PORT" "$SLURMD_PORT"; do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then skip "TCP port $port (SLURM's) is in use"; fi
done
if [[ -e "$STATE/pids" ]]; then skip "$STATE already holds a test SLURM (run stop.sh $STATE first)"; fi

# --- packages -------------------------------------------------------------------------------------
missing=()
for cmd in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged; do
    [[ -x "$cmd" ]] || missing+=("$cmd")
done
if ((${#missing[@]})); then
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Package scripts must not start the daemons themselves: a policy-rc.d says no while we install.
    wrote_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        wrote_policy=1
    fi
    apt_install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
            >"/tmp/slurm-test-apt.$$.log" 2>&1
    }
    ok=""
    if apt_install || { apt-get update -q >>"/tmp/slurm-test-apt.$$.log" 2>&1 && apt_install; }; then ok=1; fi
    if [[ -n "$wrote_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if [[ -z "$ok" ]]; then
        tail -5 "/tmp/slurm-test-apt.$$.log" >&2
        rm -f "/tmp/slurm-test-apt.$$.log"
        skip "apt-get could not install ${PACKAGES[*]}"
    fi
    rm -f "/tmp/slurm-test-apt.$$.log"
fi

# --- state and config -----------------------------------------------------------------------------
mkdir -p "$STATE"/{pids,munge,ctld,slurmd,backup,log}
chmod 700 "$STATE/munge"
STATE="$(cd "$STATE" && pwd)"
HOST="$(uname -n)"
HOST="${HOST%%.*}"
CPUS=2
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))

cleanup_on_error() {
    say "start failed; logs: $STATE/log (slurmctld.log, slurmd.log, munged.log)"
    for f in "$STATE"/log/*.log; do [[ -s "$f" ]] && { echo "--- $f" >&2; tail -15 "$f" >&2; }; done
    "$HERE/stop.sh" "$STATE" >&2 || true
}
trap cleanup_on_error ERR

# /etc/slurm: remember what was there before writing ours.
if [[ -d /etc/slurm ]]; then : >"$STATE/backup/etc_slurm_existed"; else mkdir -p /etc/slurm; fi
for f in slurm.conf gres.conf; do
    if [[ -e "/etc/slurm/$f" ]]; then cp -a "/etc/slurm/$f" "$STATE/backup/$f"; fi
    echo "/etc/slurm/$f" >>"$STATE/backup/written"
done

cat >/etc/slurm/slurm.conf <<EOF
# Written by tests/slurm/start.sh for the pipeline's tests (state: $STATE); stop.sh restores the
# previous file, or removes this one.
ClusterName=pipeline-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket.2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/ctld/slurmctld.pid
SlurmdPidFile=$STATE/slurmd/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No slurmdbd, so sacct cannot answer: every finished job is written here (state, CPUs, memory,
# time limit), and the epilog records the GPUs slurmd gave each job (SLURM_JOB_GPUS).
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
Epilog=$STATE/epilog.sh
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
# Finished jobs stay visible to squeue/scontrol this long: the profile's status command is squeue.
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$STATE/epilog.sh" <<EPILOG
#!/bin/sh
echo "JobId=\$SLURM_JOB_ID Gpus=\${SLURM_JOB_GPUS:-none} Partition=\$SLURM_JOB_PARTITION" >>"$STATE/log/epilog.txt"
EPILOG
chmod 755 "$STATE/epilog.sh"
# slurmd 22.05 drops a GPU GRES that has no device file.
cat >/etc/slurm/gres.conf <<EOF
# Written by tests/slurm/start.sh (see slurm.conf).
NodeName=$HOST Name=gpu File=/dev/null
EOF

# --- daemons --------------------------------------------------------------------------------------
start_daemon() { # name, command...: run in the foreground of its own session, record its PID
    local name="$1"; shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$STATE/pids/$name"
}

dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"
start_daemon munged /usr/sbin/munged --foreground --force \
    --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket.2" \
    --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" \
    --log-file="$STATE/log/munged.log"
for _ in $(seq 50); do [[ -S "$STATE/munge/munge.socket.2" ]] && break; sleep 0.1; done
[[ -S "$STATE/munge/munge.socket.2" ]] || { say "munged did not open its socket"; false; }

start_daemon slurmctld /usr/sbin/slurmctld -D
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
scontrol ping | grep -q "is UP" || { say "slurmctld did not answer"; false; }

start_daemon slurmd /usr/sbin/slurmd -D -N "$HOST"
state=""
for _ in $(seq 120); do
    state="$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    sleep 0.5
done
[[ "$state" == idle ]] || { say "node $HOST is '$state', not idle"; scontrol show node "$HOST" >&2; false; }
gres="$(scontrol show node "$HOST" | grep -o 'Gres=[^ ]*' || true)"
[[ "$gres" == "Gres=gpu:1"* ]] || { say "node $HOST lost its GPU GRES ($gres)"; false; }

trap - ERR
say "up: node $HOST ($CPUS CPUs, ${MEM_MB} MB, $gres), partition $PARTITION; state $STATE"
echo "SLURM_TEST_PARTITION=$PARTITION"
echo "SLURM_TEST_NODE=$HOST"
echo "SLURM_TEST_CPUS=$CPUS"
echo "SLURM_TEST_MEM_MB=$MEM_MB"
echo "SLURM_TEST_GPUS=1"
echo "SLURM_TEST_JOBCOMP=$STATE/log/jobcomp.txt"
echo "SLURM_TEST_EPILOG=$STATE/log/epilog.txt"
