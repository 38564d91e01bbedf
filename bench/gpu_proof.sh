#!/usr/bin/env bash
# How the GPU proof runs on the device machine (bench/RESULTS.md). A device call lasts at most 10
# minutes and a machine kept warm between calls keeps what earlier calls did, so the first call
# installs the carried wheels (.whl) and starts the whole proof in its own session, where it
# outlives the call; every call, the first included, waits up to WAIT seconds and packs what
# exists into $OUT (one archive: a device call brings back at most 8 files). The proof, one part
# after the other on an otherwise idle GPU:
#   1. replicate 0 from empty up to what the stock jobs read: the data, the 4B base model and
#      setting 1's adapter;
#   2. the stock jobs (bench/stock_job.py): setting 1's training and 4B answering of 3 questions;
#   3. setting 3 (augmentation, training, the course's answers), then the rest of replicate 0,
#      both test sets, through the compute table.
# The stock jobs and setting 3 come first so that a session's device time, which does not hold the
# whole proof, goes first to the figures no other run has. The three DAG parts together are one
# replicate's DAG.
# Each part's output, exit status and wall seconds are kept apart.
#   WAIT=570 bash bench/gpu_proof.sh
set -u
WAIT=${WAIT:-570}
export RUN=results/gpu-proof
# [ours] one replicate of each setting on the device: 30 minutes of device time do not hold three.
# The greedy scheduler: the carried PuLP has no solver binary.
DAG=(--cores 1 --resources gpu=1 --configfile config/gpu-proof.yaml --keep-going --scheduler greedy
     --config replicates=1)

if [ ! -d /tmp/site ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
# Every distribution requirements.txt pins must be there (carried or in the machine's image) before
# a device minute goes to the DAG: a missing one would otherwise fail its job a quarter-hour in.
python3 - <<'EOF_CHECK' || exit 1
import re, sys
sys.path.insert(0, "scripts")
from huatuo_study.versions import NOT_INSTALLED, versions
# Test- and lint-only tools and the SLURM plugins are not needed to run the DAG here.
NOT_RUN = {"pytest", "ruff", "snakefmt", "selenium", "snakemake-executor-plugin-slurm",
           "snakemake-executor-plugin-slurm-jobstep"}
pinned = [re.split(r"[=<>\[ ]", line)[0] for line in open("requirements.txt") if line.strip() and not line.startswith("#")]
missing = [name for name, found in versions({*pinned, "dashscope"} - NOT_RUN).items() if found == NOT_INSTALLED]
sys.exit(f"missing on the device: {', '.join(sorted(missing))} (carry their wheels in .whl)" if missing else 0)
EOF_CHECK
[ -e ../shared/data ] || { mkdir -p ../shared && ln -sfn "$PWD/shared/data" ../shared/data; } || exit 1

part() {  # part NAME COMMAND...: its output, exit status and wall seconds in /tmp/NAME.*
    local name=$1 start=$(date +%s); shift
    "$@" > "/tmp/$name.log" 2>&1; echo $? > "/tmp/$name.rc"; echo $(( $(date +%s) - start )) > "/tmp/$name.wall"
}
export -f part

if [ ! -f /tmp/proof.started ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > /tmp/gpu.txt
    python3 -m pip list 2>/dev/null | grep -iE "^(torch|transformers|peft|trl|bitsandbytes|datasets|snakemake|accelerate|pyarrow) " > /tmp/versions.txt
    touch /tmp/proof.started
    setsid nohup bash -c '
        part dag_stock_inputs python3 -m snakemake $RUN/train_stats/setting1/rep0.json $RUN/data/test/course.jsonl "$@"
        part stock python3 bench/stock_job.py --config config/gpu-proof.yaml --train setting1 --generate setting1 \
            --questions 3 --out /tmp/stock_jobs.json
        part dag_setting3 python3 -m snakemake $RUN/generation_stats/course/setting3/rep0.json "$@"
        part dag python3 -m snakemake "$@" --until compute_table
        touch /tmp/proof.done' _ "${DAG[@]}" > /tmp/driver.log 2>&1 &
fi
end=$((SECONDS + WAIT))
while [ ! -f /tmp/proof.done ] && [ $SECONDS -lt $end ]; do sleep 5; done
for name in dag_stock_inputs stock dag_setting3 dag; do
    [ -f /tmp/$name.log ] && grep -E "^\[|Finished job|Error|error|^(train|generate) " /tmp/$name.log | tail -n 8
    [ -f /tmp/$name.wall ] && echo "$name: rc $(cat /tmp/$name.rc), $(cat /tmp/$name.wall) s"
done

mkdir -p /tmp/device && cp /tmp/gpu.txt /tmp/versions.txt /tmp/driver.log /tmp/dag*.* /tmp/stock.* /tmp/stock_jobs.json /tmp/device/ 2>/dev/null
tar czf "$OUT/proof.tgz" --ignore-failed-read -C / tmp/device -C "$PWD" $RUN/benchmarks $RUN/train_stats \
    $RUN/generation_stats $RUN/tables $RUN/losses $RUN/logs $RUN/generations $RUN/models/*/manifest.json 2>/dev/null
ls -la "$OUT"
