#!/usr/bin/env bash
# Regenerates every report under reports/ from the committed stores (no training): Table 1 with the
# paper's numbers beside ours (table.md), figures, HTML. The runs themselves: each setup's sweep.yaml
# (resumable: `cl-bench sweep FILE --store STORE` picks up where the last one stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
report() {  # STORE OUT_DIR [report options]
    local store=$1 out=$2; shift 2
    cl-bench report --store "$store" --paper --matrices "$@" > "$out/table.md"
    cl-bench report --store "$store" --figures "$out/figures" --html "$out/report.html" "$@" > /dev/null
}
report reports/mixture_mini/runs.db reports/mixture_mini --tag mini
report reports/cifar/runs.db reports/cifar --tag cifar-r1
# the earlier reduced-scale runs (r1, r2, r2m, bf16) of split/permuted MNIST and the mixture
cl-bench report --store reports/runs.db --paper --matrices > reports/table.md
cl-bench report --store reports/runs.db --figures reports/figures --html reports/report.html > /dev/null
