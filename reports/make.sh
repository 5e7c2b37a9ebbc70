#!/usr/bin/env bash
# Regenerates every report under reports/ from the committed stores (no training; the stores are only
# read): Table 1 with the paper's numbers beside ours (table.md), figures (PNG 300 dpi, PDF with TrueType
# fonts, captions.md), HTML. Each table states its scale and which configuration each row is. The runs
# themselves: each setup's sweep.yaml (resumable: `cl-bench sweep FILE --store STORE` picks up where the
# last one stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
report() {  # STORE OUT_DIR [report options]
    local store=$1 out=$2; shift 2
    rm -rf "$out/figures"  # figure names follow the sections: leave no stale one behind
    cl-bench report --store "$store" --paper --matrices "$@" > "$out/table.md"
    cl-bench report --store "$store" --paper --figures "$out/figures" --html "$out/report.html" "$@" > /dev/null
}
report reports/mixture_mini/runs.db reports/mixture_mini --tag mini
report reports/mixture_smoke/runs.db reports/mixture_smoke --tag smoke
report reports/cifar/runs.db reports/cifar --tag cifar-r1
# the earlier reduced-scale runs (r1, r2, r2m, bf16) of split/permuted MNIST and the mixture; HAT's row on
# split MNIST r1 is the setting its s_max x c sweep selected on validation (runs made before sweeps tagged it)
report reports/runs.db reports --sweep examples/sweeps/hat_split_mnist.yaml
