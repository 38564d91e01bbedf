#!/usr/bin/env bash
# Stop the test SLURM that tests/slurm/start.sh STATE_DIR started, and leave the machine as found:
#
#   tests/slurm/stop.sh STATE_DIR
#
# Cancels the jobs still in that cluster, ends exactly the daemons start.sh recorded under
# STATE_DIR/pids (by PID, after checking that the PID is still that daemon), restores the
# /etc/slurm files it backed up and removes those it wrote where none existed. The logs under
# STATE_DIR/log are kept. Safe to run twice, or after a start that failed half-way.
set -uo pipefail

STATE="${1:-${SLURM_TEST_DIR:-/tmp/pipeline-slurm-test}}"
say() { echo "[slurm-test] $*" >&2; }
[[ -d "$STATE/pids" ]] || { say "nothing to stop in $STATE"; exit 0; }

alive() { # pid, binary: is this PID still that daemon?
    local cmdline
    cmdline="$( { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null)"
    [[ "$cmdline" == "$2 "* ]]
}

# Jobs first, so that no slurmstepd is left behind once slurmd is gone.
if [[ -s "$STATE/pids/slurmctld" ]] && alive "$(cat "$STATE/pids/slurmctld")" /usr/sbin/slurmctld; then
    jobs="$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
        say "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z "$(squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING -o %A 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
fi

status=0
for name in slurmd slurmctld munged; do
    file="$STATE/pids/$name"
    [[ -s "$file" ]] || continue
    pid="$(cat "$file")"
    if alive "$pid" "/usr/sbin/$name"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 40); do alive "$pid" "/usr/sbin/$name" || break; sleep 0.25; done
        if alive "$pid" "/usr/sbin/$name"; then
            say "$name ($pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
        fi
        if alive "$pid" "/usr/sbin/$name"; then say "could not stop $name ($pid)"; status=1; fi
    fi
    rm -f "$file"
done

# /etc/slurm as it was: restore backed-up files, remove the ones that did not exist before.
if [[ -f "$STATE/backup/written" ]]; then
    while read -r path; do
        saved="$STATE/backup/$(basename "$path")"
        if [[ -e "$saved" ]]; then cp -a "$saved" "$path" && rm -f "$saved"; else rm -f "$path"; fi
    done <"$STATE/backup/written"
    rm -f "$STATE/backup/written"
    if [[ ! -e "$STATE/backup/etc_slurm_existed" ]]; then rmdir /etc/slurm 2>/dev/null || true; fi
    rm -f "$STATE/backup/etc_slurm_existed"
fi

rm -rf "$STATE/munge" "$STATE/ctld" "$STATE/slurmd"
[[ $status == 0 ]] && rmdir "$STATE/pids" 2>/dev/null
say "stopped (logs kept in $STATE/log)"
exit $status
