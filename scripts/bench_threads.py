"""Thread policy benchmark: `cl-bench run` with the default thread count (cl_bench.threads) against
`--threads 1` and `--threads 2`, on the machine as found and with one more busy process
(`python -c 'while True: pass'`). Writes a markdown table with the load average beside each timing.

    python scripts/bench_threads.py [--repeats 2] [--out reports/bench/threads.md]

Each timing is the wall time of a fresh `cl-bench run -s sgd -c split_mnist --max-train-per-task 1000
--set epochs=3` (a new store each time, so nothing is served from a store), MNIST already on disk
(CL_BENCH_DATA). OMP_NUM_THREADS is removed from the runs' environment (it would count as a choice).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "-s", "sgd", "-c", "split_mnist", "--max-train-per-task", "1000", "--set", "epochs=3", "--quiet"]
SETTINGS = (None, 1, 2)  # None: the default policy


def one_run(threads: int | None, folder: Path) -> tuple[float, float, int]:
    """(wall seconds, 1-minute load average at the start, threads the run used)."""
    cl_bench = Path(sys.executable).with_name("cl-bench")
    store = Path(tempfile.mkdtemp(dir=folder)) / "runs.db"
    cmd = [str(cl_bench), *RUN, "--store", str(store)] + ([] if threads is None else ["--threads", str(threads)])
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    said = re.search(r"using (\d+) torch thread", out.stderr)
    used = threads or (int(said.group(1)) if said else len(os.sched_getaffinity(0)))
    return wall, load, used


def measure(case: str, repeats: int, folder: Path) -> list[str]:
    cells, rows = {}, []
    for threads in SETTINGS:
        runs = [one_run(threads, folder) for _ in range(repeats)]
        cells[threads] = runs
    best = min(statistics.median(w for w, _, _ in cells[t]) for t in (1, 2))
    default = statistics.median(w for w, _, _ in cells[None])
    loads = [load for runs in cells.values() for _, load, _ in runs]
    for threads in SETTINGS:
        runs = cells[threads]
        name = "default" + f" (chose {runs[0][2]})" if threads is None else f"--threads {threads}"
        times = ", ".join(f"{w:.1f}" for w, _, _ in runs)
        rows.append(f"| {case} | {name} | {times} | {statistics.median(w for w, _, _ in runs):.1f} |")
    load_range = f"load average {min(loads):.2f}-{max(loads):.2f}"
    rows.append(f"| {case} | default / best explicit | {load_range} | **{default / best:.2f}x** |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="reports/bench/threads.md")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += measure("as found", args.repeats, Path(tmp))
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(20)  # let the 1-minute load average see it
            rows += measure("+1 busy process", args.repeats, Path(tmp))
        finally:
            busy.kill()
    table = "\n".join(
        [
            "| machine | threads | wall s (each run) | median s |",
            "|---|---|---|---:|",
            *rows,
        ]
    )
    text = (
        f"# Thread policy: `cl-bench run` default vs explicit threads\n\n"
        f"`python scripts/bench_threads.py --repeats {args.repeats}` on {cores} usable cores, torch "
        f"{__import__('torch').__version__}, {time.strftime('%Y-%m-%d')}. Each run: `cl-bench {' '.join(RUN)}` "
        f"into a fresh store (MNIST on disk). The load average (1 minute) is read as each run starts.\n\n"
        f"{table}\n"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
