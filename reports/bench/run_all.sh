#!/usr/bin/env bash
# The speed measurements of the README's performance section (issue 10), one after the other, on an
# otherwise idle machine: bash reports/bench/run_all.sh [BEFORE_CHECKOUT]
# BEFORE_CHECKOUT: a checkout of an earlier commit (with cl_bench/strategies and cl_bench/benchmarks
# symlinked to its strategies/ and benchmarks/) to time the same loops before the optimisations.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=reports/bench
BASELINES="-s sgd -s sgd_frozen -s ewc -s imm_mean -s imm_mode -s lwf -s lfl -s hat -s pnn -s joint"
cl-bench bench $BASELINES -c split_mnist --samples 10000 --reps 3 --threads 2 --out $OUT/mlp_fp32.json
cl-bench bench -s sgd -s ewc -s hat -s joint -c split_mnist --samples 10000 --reps 7 --threads 2 \
  --out $OUT/mlp_fp32_7reps.json
cl-bench bench -s sgd -s ewc -s lwf -s imm_mean -s hat -s pnn -c synthetic-alexnet --samples 5000 --reps 3 \
  --threads 2 --out $OUT/alexnet_fp32.json
cl-bench bench -s sgd -s ewc -s hat -c synthetic-alexnet --samples 5000 --reps 3 --threads 2 --channels-last \
  --out $OUT/alexnet_fp32_channels_last.json
cl-bench bench -s sgd -s ewc -s hat -c split_mnist --samples 10000 --reps 3 --threads 2 --precision bf16 \
  --out $OUT/mlp_bf16.json
cl-bench bench -s sgd -s ewc -s hat -c synthetic-alexnet --samples 5000 --reps 3 --threads 2 --precision bf16 \
  --channels-last --out $OUT/alexnet_bf16_channels_last.json
cl-bench bench -s sgd -s hat -c split_mnist --samples 10000 --reps 3 --threads 2 --compile --out $OUT/mlp_compile.json
cl-bench bench -s sgd -s hat -c synthetic-alexnet --samples 5000 --reps 3 --threads 2 --compile \
  --out $OUT/alexnet_compile.json
if [ -n "${1:-}" ]; then  # the same loops with the code before the optimisations (one strategy per run there)
  HERE="$PWD"
  for s in sgd ewc hat; do  # run from inside the old checkout: `python -m` puts the cwd first on sys.path
    (cd "$1" && python -m cl_bench.cli bench -s $s -c split_mnist --samples 10000 --reps 3 --threads 2 \
      --out "$HERE/$OUT/before/mlp_$s.json")
    (cd "$1" && python -m cl_bench.cli bench -s $s -c synthetic-alexnet --samples 5000 --reps 3 --threads 2 \
      --out "$HERE/$OUT/before/alexnet_$s.json")
  done
fi
