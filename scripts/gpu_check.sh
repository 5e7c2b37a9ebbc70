#!/usr/bin/env bash
# The first command of a session on a GPU machine: is the GPU path right, and how fast is it?
#
#   scripts/gpu_check.sh [DEVICE]        DEVICE: cuda (default), cuda:1, ... or cpu
#
# 1. `cl-bench doctor --scale full`: facts, every strategy against the CPU, checkpoints across devices,
#    bf16, the device tests (tests/devices), throughput, one short run per strategy;
# 2. `cl-bench bench` of sgd, ewc and hat on the MLP and on the AlexNet on the device.
# Everything lands in reports/gpu/ (the doctor's dated report, the bench results, this script's log),
# and is copied to $OUT when that is set. Each step has a time limit, so the whole fits in 10 minutes;
# a step that fails or runs out of time is noted and the next one still runs (the doctor writes its
# report after each of its steps, so a stopped doctor leaves what it found). Exit status 1 if any
# step failed.
#
# Environment: CL_BENCH_DATA (data root; MNIST for the doctor's short runs), DOCTOR_TIMEOUT (s,
# default 390), BENCH_TIMEOUT (s per bench, default 75), OUT (a folder to copy the results into).
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE="${1:-cuda}"
REPORTS=reports/gpu
DOCTOR_TIMEOUT="${DOCTOR_TIMEOUT:-390}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-75}"
mkdir -p "$REPORTS"
LOG="$REPORTS/gpu_check-$(date +%Y-%m-%d-%H%M%S).log"
CLI=(python -c 'from cl_bench.cli import main; main()')  # works whether or not `cl-bench` is on PATH
failed=0

copy_out() {
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT" && cp -r "$REPORTS"/. "$OUT"/ && echo "copied $REPORTS to $OUT"
    fi
}
trap copy_out EXIT

step() {  # step SECONDS COMMAND...: run with a time limit, log it, note a failure, go on
    local limit=$1
    shift
    echo "== $(date +%H:%M:%S) $* (limit ${limit} s)" | tee -a "$LOG"
    timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "== FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ': out of time')): $*" | tee -a "$LOG"
        failed=1
    fi
}

if ! python -c 'import cl_bench.strategies' 2>/dev/null; then  # a fresh machine: install the checkout
    echo "cl-bench is not installed: pip install --no-deps -e ." | tee -a "$LOG"
    pip install -q --no-deps --no-build-isolation -e . 2>&1 | tee -a "$LOG"
fi
command -v nvidia-smi >/dev/null && nvidia-smi 2>&1 | tee -a "$LOG"

step "$DOCTOR_TIMEOUT" python -m cl_bench.cli.doctor --device "$DEVICE" --scale full --out "$REPORTS"
for scenario in synthetic-mlp synthetic-alexnet; do
    step "$BENCH_TIMEOUT" "${CLI[@]}" bench -s sgd -s ewc -s hat --scenario "$scenario" --device "$DEVICE" \
        --samples 10000 --reps 3 --out "$REPORTS/bench-$scenario-${DEVICE/:/-}.json"
done

echo "== $(date +%H:%M:%S) done: $([ "$failed" -eq 0 ] && echo 'every step passed' || echo 'some step FAILED'); see $REPORTS" \
    | tee -a "$LOG"
exit "$failed"
