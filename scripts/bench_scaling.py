"""How the reading commands scale with the store: CPU seconds and peak RSS at N runs.

    OMP_NUM_THREADS=1 CL_BENCH_DATA=/path/to/data python scripts/bench_scaling.py --label after
    PYTHONPATH=/path/to/old/checkout python scripts/bench_scaling.py --label before   # another tree

The stores are built honestly: five real tiny runs (random, joint, sgd, ewc, hat on split MNIST,
50 training samples per task, 1 epoch, seed 0) are made once with ``cl-bench run``; each store holds
those five rows replicated under seeds 0..N/5-1, every column as the real run stored it except the
seed and the run id (recomputed the way ``RunConfig.run_id`` does, checked against the real ids), with
one finished attempt each, as a real save writes. The data and accuracies are seed 0's in every copy.

Each command is timed in its own process (``os.wait4``: user + system CPU seconds and peak RSS of that
process): ``report``, ``status`` and ``sweep --dry-run`` of a sweep file whose grid is exactly the
store's runs, ``runs list``, and ``cl_bench.load_results``. A command that runs past ``--timeout``
seconds is stopped and written as such. Results go to ``<out dir>/scaling-<label>.json``; the markdown
table (every label found there, side by side) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

TEMPLATES = ("random", "joint", "sgd", "ewc", "hat")
SCENARIO, CAP, EPOCHS = "split_mnist", 50, 1
CLI = "import sys; from cl_bench.cli import main; sys.exit(main())"
LOAD = "import sys, cl_bench; r, a = cl_bench.load_results(sys.argv[1]); print(len(r), len(a))"
COMMANDS = {  # name -> argv after the python executable ({store}, {sweep} filled in)
    "report": ["-c", CLI, "report", "--store", "{store}"],
    "status": ["-c", CLI, "status", "{sweep}", "--store", "{store}"],
    "runs list": ["-c", CLI, "runs", "list", "--store", "{store}"],
    "load_results": ["-c", LOAD, "{store}"],
    "sweep --dry-run": ["-c", CLI, "sweep", "{sweep}", "--dry-run", "--store", "{store}"],
}


def env() -> dict[str, str]:
    out = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return out


def timed(argv: list[str], timeout: float, cwd: Path) -> dict:
    """CPU seconds (user + system) and peak RSS (MiB) of one process; ``stopped`` past ``timeout``."""
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen([sys.executable, *argv], stdout=null, stderr=subprocess.PIPE, env=env(), cwd=cwd)
    start, stopped = time.monotonic(), False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            stopped = True
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace")[-400:]
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    return {
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "rss_mib": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(time.monotonic() - start, 2),
        "rc": code,
        "stopped": stopped,
        "stderr": err if code else "",
    }


def make_templates(path: Path, cwd: Path) -> None:
    """The five real tiny runs, made once."""
    if path.exists():
        return
    for strategy in TEMPLATES:
        argv = ["-c", CLI, "run", "-s", strategy, "-c", SCENARIO, "--seed", "0", "--store", str(path)]
        argv += ["--max-train-per-task", str(CAP), "--set", f"epochs={EPOCHS}"]
        subprocess.run([sys.executable, *argv], check=True, env=env(), cwd=cwd, stdout=subprocess.DEVNULL)


def run_id(row: sqlite3.Row, seed: int) -> str:
    """``RunConfig.run_id`` of the stored configuration under ``seed``."""
    from cl_bench.store.records import config_hash
    from cl_bench.trainer import LATER_SETTINGS

    protocol = {
        k: v for k, v in json.loads(row["protocol"]).items() if not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])
    }
    return config_hash(
        {
            "strategy": row["strategy"],
            "scenario": row["scenario"],
            "seed": seed,
            "hparams": json.loads(row["hparams"]),
            "protocol": protocol,
            "scenario_options": json.loads(row["scenario_options"]),
        }
    )


def build_store(templates: Path, path: Path, n: int) -> None:
    """``n`` runs: the templates replicated under seeds 0..n/5-1 (module docstring)."""
    from cl_bench.store import Store

    if path.exists():
        return
    Store(path).run_ids()  # creates the schema as a real first write would
    src = sqlite3.connect(templates)
    src.row_factory = sqlite3.Row
    rows = src.execute("SELECT * FROM runs ORDER BY strategy").fetchall()
    accs = src.execute("SELECT run_id, t, tau, acc FROM accuracy").fetchall()
    src.close()
    for r in rows:  # the recomputation is the runner's: the real run ids come out
        assert run_id(r, r["seed"]) == r["run_id"], f"run id of {r['strategy']} not reproduced"
    cols = rows[0].keys()
    conn = sqlite3.connect(path)
    with conn:
        for seed in range(n // len(rows)):
            runs, cells, attempts = [], [], []
            for r in rows:
                new = run_id(r, seed)
                runs.append([new if c == "run_id" else seed if c == "seed" else r[c] for c in cols])
                cells += [(new, a["t"], a["tau"], a["acc"]) for a in accs if a["run_id"] == r["run_id"]]
                attempts.append((new, 1, "finished", None, r["started"], r["finished"], r["wall_s"], r["code_version"]))
            conn.executemany(f"INSERT INTO runs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", runs)
            conn.executemany("INSERT INTO accuracy VALUES (?,?,?,?)", cells)
            conn.executemany(
                "INSERT INTO attempts (run_id, attempt, status, error, started, finished, wall_s, code_version) "
                "VALUES (?,?,?,?,?,?,?,?)",
                attempts,
            )
    conn.close()


def sweep_file(path: Path, n: int) -> None:
    """The grid of the store's runs: sgd, ewc, hat and the references on n/5 seeds."""
    path.write_text(
        f"name: scaling\nscenario: {{name: {SCENARIO}, max_train_per_task: {CAP}}}\n"
        f"strategies: [sgd, ewc, hat]\nreferences: true\nseeds: {n // len(TEMPLATES)}\nprotocol: {{epochs: {EPOCHS}}}\n"
    )


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log CPU s on log N."""
    pts = [(math.log(n), math.log(c)) for n, c in points if c and c > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def table(results: dict[str, dict]) -> str:
    labels = sorted(results, key=lambda s: (s != "before", s))
    sizes = sorted({int(n) for res in results.values() for n in res["sizes"]})
    steps = list(zip(sizes[1:], sizes[2:]))
    lines = []
    for label in labels:
        res = results[label]
        ms = [m for size in res["sizes"].values() for m in size.values()]
        commits = sorted({m.get("tree", res["tree"]) for m in ms})
        loads = [m["load"] for m in ms]
        lines += [
            f"\n### {label}\n",
            f"cl-bench {', '.join(commits)}; {res['when']}; load average {min(loads):.1f}-{max(loads):.1f}\n",
        ]
        head = "| command | " + " | ".join(f"{n:,} runs: CPU s / peak RSS MiB" for n in sizes)
        head += " | " + " | ".join(f"exponent {a:,} -> {b:,}" for a, b in steps) + " |"
        lines += [head, "|" + "---|" * (len(sizes) + len(steps) + 1)]
        for cmd in COMMANDS:
            cells = []
            for n in sizes:
                m = res["sizes"].get(str(n), {}).get(cmd)
                if m is None:
                    cells.append("not measured")
                elif m["stopped"]:
                    cells.append(f"stopped after > {m['cpu_s']:.0f} s")
                elif m["rc"]:
                    cells.append(f"failed (exit {m['rc']})")
                else:
                    cells.append(f"{m['cpu_s']:.1f} / {m['rss_mib']:.0f}")
            base = res["sizes"].get(str(sizes[0]), {}).get(cmd)
            marginal = []
            for a, b in steps:  # of the cost above the smallest store's (imports, start-up): what grows with N
                ma, mb = (res["sizes"].get(str(v), {}).get(cmd) for v in (a, b))
                ok = base and ma and mb and not any(m["rc"] or m["stopped"] for m in (base, ma, mb))
                k = exponent([(a, ma["cpu_s"] - base["cpu_s"]), (b, mb["cpu_s"] - base["cpu_s"])]) if ok else None
                marginal.append("" if k is None else f"{k:.2f}")
            lines.append(f"| {cmd} | " + " | ".join(cells) + " | " + " | ".join(marginal) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="e.g. before / after: one JSON per label")
    ap.add_argument("--sizes", default="100,1000,10000,100000")
    ap.add_argument("--work", default="/tmp/cl-bench-scaling", help="where the stores are built (kept, reused)")
    ap.add_argument("--out", default="reports/bench/scaling.md")
    ap.add_argument("--timeout", type=float, default=900, help="stop one command after this many seconds")
    ap.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated subset of: " + ", ".join(COMMANDS))
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    json_path = out.parent / f"scaling-{args.label}.json"
    import cl_bench

    tree = str(Path(cl_bench.__file__).parents[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    res = json.loads(json_path.read_text()) if json_path.exists() else {"sizes": {}}
    res.update(tree=f"{commit} ({tree})", when=time.strftime("%Y-%m-%d %H:%M"), load=os.getloadavg()[0])
    templates = work / "templates.db"
    make_templates(templates, work)
    for n in (int(s) for s in args.sizes.split(",")):
        store, sweep = work / f"runs-{n}.db", work / f"sweep-{n}.yaml"
        build_store(templates, store, n)
        sweep_file(sweep, n)
        for cmd in args.commands.split(","):
            argv = [a.format(store=store, sweep=sweep) for a in COMMANDS[cmd]]
            m = timed(argv, args.timeout, work)
            m["load"], m["tree"] = round(os.getloadavg()[0], 2), res["tree"]
            res["sizes"].setdefault(str(n), {})[cmd] = m
            print(f"{args.label} {n:>7} {cmd:<16} {m}", flush=True)
            json_path.write_text(json.dumps(res, indent=1))
    results = {p.stem.removeprefix("scaling-"): json.loads(p.read_text()) for p in out.parent.glob("scaling-*.json")}
    out.write_text(HEADER + table(results))


HEADER = """# The reading commands at scale

`python scripts/bench_scaling.py --label LABEL` (see its docstring) on a 2-core CPU, one thread, one core
busy with another job throughout (the load average is written with each result): each cell is one
process, user + system CPU seconds / its peak RSS. The stores are five real tiny runs (random, joint,
sgd, ewc, hat; split MNIST, 50 samples per task, 1 epoch) replicated under new seeds, with their real
rows (accuracy, history, monitoring, data) and recomputed run ids. `status` and `sweep --dry-run` read
a sweep file whose grid is exactly the store's runs. The exponents are the slope of log CPU s on log N
between two sizes, of the CPU seconds above the 100-run store's (the imports and start-up, 2-4 s, which
do not grow with N): 1.0 is linear, 2.0 quadratic. Several commits in a table: its cells were measured
on them (only the dry run at 100,000 runs was measured again, after a neighbour's broken import).
"""

if __name__ == "__main__":
    main()
