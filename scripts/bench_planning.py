"""Sweep planning at scale: CPU seconds and peak RSS of planning a sweep of N runs, and of the sweep
driver's planning per finished run.

    OMP_NUM_THREADS=1 CL_BENCH_DATA=/path/to/data python scripts/bench_planning.py --label after
    PYTHONPATH=/path/to/old/checkout python scripts/bench_planning.py --label before   # another tree

The sweep is scripts/bench_scaling.py's: sgd, ewc, hat and the references (joint, random) on split
MNIST (50 training samples per task, 1 epoch) on N/5 seeds. Its stores are built that script's honest
way (five real tiny runs made once with ``cl-bench run``, their rows replicated under new seeds with
recomputed run ids): "empty" has no runs (the dry run reads no store file at all: none exists yet),
"99% done" holds the first 99% of the sweep's seeds, so 1% of the runs are pending.

Each measurement is one process (``os.wait4``: user + system CPU seconds and peak RSS):

- ``sweep --dry-run``: ``cl-bench sweep FILE --dry-run --max-runs N --store STORE``.
- ``driver``: this script's ``--driver`` mode, on a copy of the store: a ``Scheduler`` (the object every
  backend asks for runs) plans the sweep once (``next_runs``, as a driver starts), then for each of K
  runs handed out claims it, stores it finished (the replicated row of its real template, as a worker's
  save would) and releases it, and asks ``next_runs`` again, as the local driver does after each
  finished run. Its first plan and the mean of the K later ``next_runs`` calls are timed in-process
  (``time.process_time``), the process's peak RSS by ``wait4``.

Results go to ``<out dir>/planning-<label>.json``; the markdown table (every label found there) to
``--out``, with the machine's load average beside each number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scaling  # noqa: E402  (this folder is no package: the store builder is shared from here)

DONE_SHARE = 0.99  # of the sweep's seeds stored finished in the "99% done" store
STATES = ("empty", "99% done")


def sweep_file(path: Path, n: int) -> None:
    """bench_scaling's sweep of ``n`` runs, under a name of its own (its runs' tags)."""
    bench_scaling.sweep_file(path, n)
    path.write_text(path.read_text().replace("name: scaling", "name: planning"))


def store_for(work: Path, n: int, state: str) -> Path:
    """The store of ``state`` for the sweep of ``n`` runs, built once (kept in ``work``)."""
    templates = work / "templates.db"
    bench_scaling.make_templates(templates, work)
    if state == "empty":
        return work / f"absent-{n}.db"  # never created: a first dry run finds no store
    seeds = int(n // len(bench_scaling.TEMPLATES) * DONE_SHARE)
    path = work / f"done-{n}.db"
    bench_scaling.build_store(templates, path, seeds * len(bench_scaling.TEMPLATES))
    return path


# ---- the driver, in its own process --------------------------------------------------------------------
def drive(store_path: Path, sweep_path: Path, n: int, finishes: int) -> dict:
    """The driver's planning on ``store_path`` (module docstring); prints nothing, returns timings."""
    from cl_bench.store import Store
    from cl_bench.sweep import Scheduler, load_sweep

    sweep = load_sweep(sweep_path, max_runs=n)
    templates = _template_rows(store_path.parent / "templates.db")
    start = time.process_time()
    scheduler = Scheduler(sweep, Store(store_path), data_root=os.environ.get("CL_BENCH_DATA"))
    queue = scheduler.next_runs()
    first = time.process_time() - start
    later = []
    for item in queue[:finishes]:
        if scheduler.claim(item) is not None:
            raise SystemExit(f"could not claim {item.run_id}")
        _store_finished(scheduler.store.path, templates[item.config.strategy], item.config.seed, item.run_id)
        scheduler.release(item)
        start = time.process_time()
        queue += scheduler.next_runs()
        later.append(time.process_time() - start)
    per_run = round(sum(later) / len(later), 6)
    return {
        "first_plan_s": round(first, 3),
        "per_finished_run_s": per_run,
        "finishes": len(later),
        "handed": len(queue),
    }


def _template_rows(path: Path) -> dict[str, dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = {r["strategy"]: dict(r) for r in conn.execute("SELECT * FROM runs")}
    accs = conn.execute("SELECT run_id, t, tau, acc FROM accuracy").fetchall()
    conn.close()
    for row in rows.values():
        row["_accuracy"] = [(a["t"], a["tau"], a["acc"]) for a in accs if a["run_id"] == row["run_id"]]
    return rows


def _store_finished(store: Path, template: dict, seed: int, expected_id: str) -> None:
    """The template's row under ``seed``, as a worker's save would store it (bench_scaling.build_store)."""
    run_id = bench_scaling.run_id(template, seed)
    assert run_id == expected_id, f"replicated id {run_id} is not the plan's {expected_id}"
    cols = [c for c in template if not c.startswith("_")]
    row = [run_id if c == "run_id" else seed if c == "seed" else template[c] for c in cols]
    conn = sqlite3.connect(store)
    with conn:
        conn.execute(f"INSERT INTO runs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", row)
        conn.executemany("INSERT INTO accuracy VALUES (?,?,?,?)", [(run_id, *a) for a in template["_accuracy"]])
        conn.execute(
            "INSERT INTO attempts (run_id, attempt, status, error, started, finished, wall_s, code_version) "
            "VALUES (?,1,'finished',NULL,?,?,?,?)",
            (run_id, template["started"], template["finished"], template["wall_s"], template["code_version"]),
        )
    conn.close()


def measure_driver(store: Path, sweep: Path, n: int, finishes: int, timeout: float, work: Path) -> dict:
    """The driver mode in a child process, on a copy of ``store`` (it tags and adds runs)."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        copy = Path(tmp) / "runs.db"
        if store.exists():
            shutil.copyfile(store, copy)
        else:
            from cl_bench.store import Store

            Store(copy).run_ids()  # an empty store, its schema made as a first write would
        shutil.copyfile(work / "templates.db", Path(tmp) / "templates.db")
        out = Path(tmp) / "driver.json"
        argv = [__file__, "--driver", str(copy), str(sweep), str(n), str(finishes), str(out)]
        m = bench_scaling.timed(argv, timeout, work)
        if out.exists():
            m |= json.loads(out.read_text())
    return m


def machine() -> str:
    """The CPU, its cores and the threads used, in words."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} cores, 1 thread per measured process (bench_scaling.env)"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


# ---- the table -----------------------------------------------------------------------------------------
def cell(m: dict | None, what: str) -> str:
    if m is None:
        return "not measured"
    if m["stopped"]:
        return f"stopped after > {m['wall_s']:.0f} s"
    if m["rc"]:
        return f"failed (exit {m['rc']})"
    load = f" (load {m['load']:.1f})"
    if what == "dry":
        return f"{m['cpu_s']:.1f} s / {m['rss_mib']:.0f} MiB{load}"
    seconds = m["per_finished_run_s"]
    took = f"{seconds:.2f} s" if seconds >= 1 else f"{1000 * seconds:.2f} ms"
    per_run = f"{took} / run (mean of {m.get('finishes', 20)})"
    return f"{m['first_plan_s']:.2f} s; {per_run}; {m['rss_mib']:.0f} MiB{load}"


def table(results: dict[str, dict]) -> str:
    labels = sorted(results, key=lambda s: (s != "before", s))

    def order(key: str) -> tuple:
        what, n, state = key.split("|")
        return ("dry", "driver").index(what), int(n), STATES.index(state) if state in STATES else len(STATES)

    keys = sorted({k for res in results.values() for k in res["cells"]}, key=order)
    lines = ["| measurement | runs | store | " + " | ".join(labels) + " |", "|---|---:|---|" + "---|" * len(labels)]
    for key in keys:
        what, n, state = key.split("|")
        name = (
            "`sweep --dry-run`: CPU s / peak RSS"
            if what == "dry"
            else "driver: first plan CPU s; planning per finished run; peak RSS"
        )
        cells = [cell(results[label]["cells"].get(key), what) for label in labels]
        lines.append(f"| {name} | {int(n):,} | {state} | " + " | ".join(cells) + " |")
    trees = "".join(
        f"\n- {label}: cl-bench {res['tree']}, {res['when']}; {res.get('machine') or machine()}"
        for label, res in sorted(results.items(), key=lambda kv: labels.index(kv[0]))
    )
    return "\n".join(lines) + "\n" + trees + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        store, sweep, n, finishes, out = sys.argv[2:7]
        Path(out).write_text(json.dumps(drive(Path(store), Path(sweep), int(n), int(finishes))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="e.g. before / after: one JSON per label")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--states", default=",".join(STATES))
    ap.add_argument("--measurements", default="dry,driver", help="dry (sweep --dry-run), driver, or both")
    ap.add_argument("--finishes", type=int, default=20, help="finished runs the driver measurement stores")
    ap.add_argument("--work", default="/tmp/cl-bench-planning", help="where the stores are built (kept, reused)")
    ap.add_argument("--out", default="reports/bench/planning.md")
    ap.add_argument("--timeout", type=float, default=1800, help="stop one measurement after this many seconds")
    ap.add_argument("--commit", help="the measured tree's commit, where it is no git checkout (git archive)")
    ap.add_argument("--table-only", action="store_true", help="measure nothing: write the table of the JSONs")
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    json_path = out.parent / f"planning-{args.label}.json"
    import cl_bench

    tree = str(Path(cl_bench.__file__).parents[1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True).stdout
    res = json.loads(json_path.read_text()) if json_path.exists() else {"cells": {}}
    res.update(tree=f"{args.commit or commit.strip() or '?'} ({tree})", when=time.strftime("%Y-%m-%d %H:%M"))
    res["machine"] = machine()  # written with the first measurement (--table-only writes no JSON)
    for n in [] if args.table_only else (int(s) for s in args.sizes.split(",")):
        sweep = work / f"sweep-{n}.yaml"
        sweep_file(sweep, n)
        for state in args.states.split(","):
            store = store_for(work, n, state)
            for what in args.measurements.split(","):
                if what == "dry":
                    argv = ["-c", bench_scaling.CLI, "sweep", str(sweep), "--dry-run", "--max-runs", str(n)]
                    m = bench_scaling.timed(argv + ["--store", str(store)], args.timeout, work)
                else:
                    m = measure_driver(store, sweep, n, args.finishes, args.timeout, work)
                m["load"] = round(os.getloadavg()[0], 2)
                res["cells"][f"{what}|{n}|{state}"] = m
                print(f"{args.label} {n:>8} {state:<9} {what:<7} {m}", flush=True)
                json_path.write_text(json.dumps(res, indent=1))
    results = {p.stem.removeprefix("planning-"): json.loads(p.read_text()) for p in out.parent.glob("planning-*.json")}
    out.write_text(HEADER + table(results))


HEADER = """# Sweep planning at scale

`python scripts/bench_planning.py --label LABEL` (see its docstring), one thread, on a 2-core CPU that
other jobs may share (the 1-minute load average, `uptime`'s, is written beside each number). The
sweep is sgd, ewc, hat, joint and random on split MNIST on N/5 seeds; "empty": no store yet (the driver:
an empty store), "99% done": a store with the real tiny runs of the first 99% of the seeds replicated
(bench_scaling's honest stores), 1% pending. Dry run: `cl-bench sweep FILE --dry-run --max-runs N`,
user + system CPU s / peak RSS of the process. Driver: a Scheduler's first plan (CPU s), then the mean
CPU of `next_runs` after each of K finished runs (20; 3 at a million runs), and the process's peak RSS.

"""

if __name__ == "__main__":
    main()
