#!/usr/bin/env bash
# How the GPU proof ran on the device machine (bench/RESULTS.md). A call runs this; a machine kept
# warm between calls keeps what earlier calls did. The first call installs the carried wheels
# (.whl), checks the CUDA-graph decoding (bench/decode_check.py), measures the decoding loop
# (bench/decode_speed.py) and starts the DAG in its own session, so that it outlives the call;
# every call waits up to WAIT seconds for it; once it has ended, STOCK=1 times the stock jobs
# (bench/stock_job.py). What came of it is packed into $OUT.
#   WAIT=540 STOCK=1 bash bench/gpu_proof.sh
set -u
WAIT=${WAIT:-540}
STOCK=${STOCK:-0}
# [ours] one replicate of each setting on the device: 30 minutes of device time do not hold three.
# The greedy scheduler: the carried PuLP has no solver binary.
DAG=(--cores 1 --resources gpu=1 --configfile config/gpu-proof.yaml --until compute_table --keep-going
     --scheduler greedy --config replicates=1)

if [ ! -d /tmp/site ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
[ -e ../shared/data ] || { mkdir -p ../shared && ln -sfn "$PWD/shared/data" ../shared/data; } || exit 1

if [ ! -f /tmp/dag.started ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > /tmp/gpu.txt
    python3 -m pip list 2>/dev/null | grep -iE "^(torch|transformers|peft|trl|bitsandbytes|datasets|snakemake|accelerate|pyarrow) " > /tmp/versions.txt
    python3 bench/decode_check.py > /tmp/decode_check.json || { cat /tmp/decode_check.json; exit 1; }
    python3 bench/decode_speed.py --batches 20,100 > /tmp/decode_speed.md 2>/tmp/decode_speed.err
    cat /tmp/decode_check.json /tmp/decode_speed.md
    touch /tmp/dag.started
    setsid nohup bash -c 'start=$(date +%s); python3 -m snakemake "$@" > /tmp/dag.log 2>&1; echo $? > /tmp/dag.rc; echo $(( $(date +%s) - start )) > /tmp/dag.wall' _ "${DAG[@]}" > /dev/null 2>&1 &
fi

end=$((SECONDS + WAIT))
while [ ! -f /tmp/dag.rc ] && [ $SECONDS -lt $end ]; do sleep 5; done
grep -E "^\[|Finished job|Error|error" /tmp/dag.log | tail -n 40

pack() {
    cp /tmp/dag.log /tmp/gpu.txt /tmp/versions.txt /tmp/decode_check.json /tmp/decode_speed.* "$OUT"/ 2>/dev/null
    cp /tmp/stock_jobs.json /tmp/dag.rc /tmp/dag.wall "$OUT"/ 2>/dev/null
    tar czf "$OUT/proof.tgz" --ignore-failed-read results/gpu-proof/benchmarks results/gpu-proof/train_stats \
        results/gpu-proof/generation_stats results/gpu-proof/tables results/gpu-proof/losses results/gpu-proof/logs \
        results/gpu-proof/generations results/gpu-proof/models/*/manifest.json 2>/dev/null
}
# Packed before the stock jobs too, so that a call stopped at its time limit still returns the DAG's files.
pack
if [ -f /tmp/dag.rc ] && [ "$STOCK" = 1 ] && [ ! -f /tmp/stock.done ]; then
    python3 bench/stock_job.py --config config/gpu-proof.yaml --train setting1 --generate setting1 \
        --questions 3 --out /tmp/stock_jobs.json && touch /tmp/stock.done && pack
fi

ls -la "$OUT"
