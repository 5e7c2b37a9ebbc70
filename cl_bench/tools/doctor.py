"""``cl-bench doctor``: can this machine's device run cl-bench correctly, and how fast? (The command,
its options and its printing are in ``cl_bench.cli.doctor``.)

In order, each step timed, every outcome written to one dated markdown report (and its JSON twin):

1. facts: torch, CUDA, cuDNN, the device (name, memory, capability, TF32 and bf16 support), the
   CPU (model, instruction set, threads) and how busy the machine is;
2. cross-device checks (``cl_bench.tools.device_checks``): every registered strategy's tiny run on the
   device against the CPU's; checkpoints written on one device and resumed on the other; the
   AlexNet (convolutions); bf16 autocast. On the CPU these are determinism checks;
3. the device tests of a source checkout (tests/devices, in a child pytest process, so that their
   global settings and a crashed CUDA context stay out of this process); skipped when the package
   is installed without its tests;
4. throughput (``cl_bench.tools.bench.run_bench``) of strategies against the bare loop on the MLP and the
   AlexNet, on the device;
5. one short ``runner.execute`` per strategy (split MNIST if the data root has MNIST, else a
   synthetic scenario), with checkpoints on.

``--scale tiny`` is sized for a CPU and CI (well under a minute); ``full`` for a data-centre GPU
(under 8 minutes). The report's records and its writing are in ``cl_bench.tools.doctor_report`` (re-exported
here).
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cl_bench
from cl_bench.data import DataAccessError, DatasetMissingError
from cl_bench.registry import all_scenarios, all_strategies, build_scenario, register_scenario
from cl_bench.runner import RunConfig, RunFailed, code_version, execute
from cl_bench.runner.checkpoint import resume_refusal
from cl_bench.store import Store
from cl_bench.tools import device_checks as dc
from cl_bench.tools.bench import environment, load_average, run_bench
from cl_bench.tools.bench_report import format_load
from cl_bench.tools.doctor_report import SECTIONS, DoctorReport, Outcome, format_report, report_stem, write_report
from cl_bench.trainer import PRESETS, resolve_device

__all__ = [
    "SCALES",
    "SECTIONS",
    "SYNTHETIC_SCENARIO",
    "TESTS_DIR",
    "ChildFailed",
    "DoctorReport",
    "Outcome",
    "Scale",
    "cross_device_checks",
    "device_facts",
    "device_tests",
    "format_report",
    "report_stem",
    "run_doctor",
    "short_run_scenario",
    "short_runs",
    "throughput",
    "write_report",
]

SYNTHETIC_SCENARIO = "doctor_synthetic"  # registered only when a doctor run needs it (no MNIST)
TESTS_DIR = Path(cl_bench.__file__).resolve().parents[1] / "tests" / "devices"  # present in a source checkout


@dataclass(frozen=True)
class Scale:
    name: str
    resume: tuple[str, ...] | None  # strategies whose checkpoints cross devices; None: every resumable one
    alexnet: tuple[str, ...]  # strategies also checked on the AlexNet
    bf16: tuple[str, ...]
    bench: tuple[str, ...]  # strategies timed against the bare loop
    bench_samples: int
    bench_reps: int
    bench_warmup: int
    run_samples: int  # max_train_per_task of the short runs
    run_epochs: int
    test_timeout: int  # seconds for the child pytest


SCALES = {
    "tiny": Scale(
        "tiny",
        resume=("sgd", "ewc", "hat"),
        alexnet=("sgd", "hat"),
        bf16=("sgd", "hat"),
        bench=("sgd", "hat"),
        bench_samples=128,
        bench_reps=1,
        bench_warmup=32,
        run_samples=100,
        run_epochs=1,
        test_timeout=300,
    ),
    "full": Scale(
        "full",
        resume=None,
        alexnet=("sgd", "ewc", "hat", "lwf", "pnn", "pathnet"),
        bf16=("sgd", "ewc", "hat", "pnn"),
        bench=("sgd", "ewc", "hat"),
        bench_samples=10000,
        bench_reps=3,
        bench_warmup=640,
        run_samples=2000,
        run_epochs=3,
        test_timeout=240,
    ),
}


def _attempt(section: str, name: str, fn: Callable[[], tuple[str, str]], echo) -> Outcome:
    """Run one check; an exception is a FAIL with its message, never the end of the doctor."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status, detail = fn()
        notes = sorted({str(w.message).splitlines()[0] for w in caught})
        if notes:
            detail += "".join(f" (warning: {n})" for n in notes)
        outcome = Outcome(section, name, status, time.perf_counter() - start, detail)
    except Exception as e:  # the report says what broke; the next check still runs
        trace = e.output if isinstance(e, ChildFailed) else "".join(traceback.format_exc().splitlines(True)[-12:])
        outcome = Outcome(section, name, "FAIL", time.perf_counter() - start, f"{type(e).__name__}: {e}", trace)
    echo(f"  {outcome.status:<4} {name:<36} {outcome.seconds:6.1f} s  {(outcome.detail.splitlines() or [''])[0][:110]}")
    return outcome


# ---- 1. facts --------------------------------------------------------------------------------------
def device_facts(device: torch.device) -> dict[str, Any]:
    """Everything the results and timings depend on, as plain values."""
    env = environment(torch.device("cpu"))
    facts: dict[str, Any] = {
        "cl_bench": f"{cl_bench.__version__} ({code_version()})",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch built for CUDA": torch.version.cuda,
        "CUDA available": torch.cuda.is_available(),
        "CUDA devices": torch.cuda.device_count(),
        "cuDNN": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "CPU": env["device_name"],
        "CPU instruction set": torch.backends.cpu.get_cpu_capability(),
        "CPUs": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "torch inter-op threads": torch.get_num_interop_threads(),
        "RAM": _gib(_ram_bytes()),
        "load average": format_load(load_average()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        facts |= {
            "GPU": props.name,
            "GPU memory": f"{_gib(total)} ({_gib(free)} free)",
            "compute capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "bf16 supported": torch.cuda.is_bf16_supported(),
            "TF32 in matmuls (runs)": torch.backends.cuda.matmul.allow_tf32,
            "TF32 in cuDNN convolutions (runs)": torch.backends.cudnn.allow_tf32,
            "cuDNN benchmark mode": torch.backends.cudnn.benchmark,
        }
    return facts


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f} GiB"


# ---- 2. cross-device checks ------------------------------------------------------------------------
def _agreement(strategy: str, **kwargs) -> tuple[str, str]:
    agreement, run, _ = dc.check_against_cpu(strategy, **kwargs)
    if agreement.ok:
        return "PASS", f"{agreement.describe()}; final mean accuracy {np.nanmean(run.accuracy[-1]):.3f}"
    return "FAIL", "; ".join(agreement.problems) + f" ({agreement.describe()})"


def cross_device_checks(device: torch.device, scale: Scale, echo) -> list[Outcome]:
    """(label, strategy, check_against_cpu's arguments) for every check of the scale, then each run."""
    strategies, cpu = all_strategies(), torch.device("cpu")
    specs = [(f"{n} (mlp, fp32)", n, {}) for n in strategies]
    specs += [(f"{n} (alexnet, fp32)", n, {"arch": "alexnet"}) for n in scale.alexnet]
    specs += [(f"{n} (mlp, bf16)", n, {"precision": "bf16"}) for n in scale.bf16]
    pairs = [(device, cpu), (cpu, device)] if device.type != "cpu" else [(cpu, cpu)]
    specs += [
        (f"{n} checkpoint {a.type} -> {b.type}", n, {"device": a, "resume_after": 0, "resume_on": b})
        for n in (scale.resume if scale.resume is not None else strategies)
        if resume_refusal(strategies[n]) is None
        for a, b in pairs
    ]
    return [
        _attempt("checks", label, lambda n=n, kw=kw: _agreement(n, **{"device": device, **kw}), echo)
        for label, n, kw in specs
    ]


# ---- 3. the device tests of a source checkout ------------------------------------------------------
def device_tests(device: torch.device, tests_dir: Path | None, timeout: int, echo) -> Outcome:
    """tests/devices (less the doctor's own test) in a child pytest on ``device`` and the CPU."""
    tests_dir = TESTS_DIR if tests_dir is None else Path(tests_dir)
    if not tests_dir.is_dir():
        echo(f"  SKIP tests/devices: no tests folder at {tests_dir} (not a source checkout)")
        return Outcome("tests", "tests/devices", "SKIP", 0.0, f"no tests folder at {tests_dir} (not a source checkout)")

    def run() -> tuple[str, str]:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfE",
            str(tests_dir),
            f"--ignore={tests_dir / 'test_doctor.py'}",
        ]
        env = dict(os.environ, CL_BENCH_TEST_DEVICE=str(device))
        try:
            done = subprocess.run(
                command, cwd=tests_dir.parents[1], env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return "FAIL", f"did not finish in {timeout} s"
        lines = (done.stdout + done.stderr).strip().splitlines()
        summary = next(
            (ln.strip("= ") for ln in reversed(lines) if re.search(r"\d+ (passed|failed|error)", ln)),
            lines[-1] if lines else "no output",
        )
        if done.returncode == 0:
            return "PASS", summary
        raise ChildFailed(f"pytest exit code {done.returncode}: {summary}", "\n".join(lines[-40:]))

    return _attempt("tests", "tests/devices", run, echo)


class ChildFailed(RuntimeError):
    """A child process failed; ``output`` is the end of what it printed (the report's trace)."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


# ---- 4. throughput ---------------------------------------------------------------------------------
def throughput(device: torch.device, scale: Scale, echo) -> tuple[list[Outcome], list[dict[str, Any]]]:
    outcomes, results = [], []
    for scenario in ("synthetic-mlp", "synthetic-alexnet"):

        def bench(scenario=scenario) -> tuple[str, str]:
            result = run_bench(
                scale.bench,
                scenario,
                samples=scale.bench_samples,
                reps=scale.bench_reps,
                warmup=scale.bench_warmup,
                task=1,
                device=str(device),
            )
            result["environment"] = environment(device)
            result["load_average_after"] = load_average()
            result["command"] = (
                f"cl-bench bench {' '.join(f'-s {s}' for s in scale.bench)} --scenario {scenario} "
                f"--samples {scale.bench_samples} --reps {scale.bench_reps} "
                f"--warmup {scale.bench_warmup} --task 1 --device {device}"
            )
            results.append(result)
            ratios = ", ".join(f"{name} x{r:.2f}" for name, r in result["train_ratio"].items())
            return "PASS", f"train time vs bare: {ratios}"

        outcomes.append(_attempt("throughput", scenario, bench, echo))
    return outcomes, results


# ---- 5. short runs ---------------------------------------------------------------------------------
def short_run_scenario(data_root) -> tuple[str, str]:
    """(scenario name, why): split MNIST if its data are there, else the synthetic one."""
    try:
        build_scenario("split_mnist", data_root=data_root, max_train_per_task=10)
        return "split_mnist", "MNIST found"
    except (DatasetMissingError, DataAccessError) as e:
        if SYNTHETIC_SCENARIO not in all_scenarios():
            register_scenario(SYNTHETIC_SCENARIO, "2 tiny synthetic tasks (cl-bench doctor)")(
                lambda seed=0, data_root_path=None, download=False: dc.tiny_scenario(seed=seed)
            )
        return SYNTHETIC_SCENARIO, f"no MNIST ({str(e).splitlines()[0]})"


def short_runs(device: torch.device, scale: Scale, data_root, echo) -> list[Outcome]:
    scenario, why = short_run_scenario(data_root)
    echo(f"  scenario {scenario}: {why}")
    protocol = PRESETS["quick"].replace(epochs=scale.run_epochs)
    options = {"max_train_per_task": scale.run_samples}
    out = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "doctor.db")  # checkpoints beside it are written and removed

        def run(name: str) -> tuple[str, str]:
            try:
                record = execute(
                    RunConfig(name, scenario, 0, {}, protocol, options), store, data_root=data_root, device=str(device)
                )
            except RunFailed as e:
                raise RuntimeError(e.record.error.splitlines()[0]) from None
            last = record.accuracy[-1]
            if not np.isfinite(last).all():
                return "FAIL", f"accuracy row {last.tolist()}"
            return "PASS", (
                f"accuracy after the last task {np.round(last, 3).tolist()}, {len(record.history)} "
                f"epochs, {record.wall_s:.1f} s"
            )

        for name in all_strategies():
            out.append(_attempt("runs", f"{name} on {scenario}", lambda n=name: run(n), echo))
    return out


# ---- the whole ------------------------------------------------------------------------------------
def run_doctor(
    device: str = "cpu",
    scale: str = "tiny",
    out: str | Path = "reports/gpu",
    data_root=None,
    tests: bool = True,
    tests_dir: Path | None = None,
    echo=lambda line: None,
) -> DoctorReport:
    """Every step above on ``device``; writes ``doctor-<device>-<date>.md`` (and ``.json``) into ``out``."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    dev = resolve_device(device)
    sc = SCALES[scale]
    started = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    report = DoctorReport(str(dev), scale, datetime.date.today().isoformat(), device_facts(dev), pending=list(SECTIONS))
    echo(f"cl-bench doctor on {dev} ({report.facts.get('GPU', report.facts['CPU'])}), scale {scale}")

    def skipped_tests() -> list[Outcome]:
        echo("  SKIP tests/devices: not asked for (--no-tests)")
        return [Outcome("tests", "tests/devices", "SKIP", 0.0, "not asked for (--no-tests)")]

    def timed_throughput() -> list[Outcome]:
        outcomes, report.bench = throughput(dev, sc, echo)
        return outcomes

    steps = {
        "checks": lambda: cross_device_checks(dev, sc, echo),
        "tests": (lambda: [device_tests(dev, tests_dir, sc.test_timeout, echo)]) if tests else skipped_tests,
        "throughput": timed_throughput,
        "runs": lambda: short_runs(dev, sc, data_root, echo),
    }
    report.path = write_report(report, out)  # the facts, at once: a doctor killed in its first step leaves them
    for section, step in steps.items():
        echo(SECTIONS[section])
        report.outcomes += step()
        report.pending.remove(section)
        if dev.type == "cuda":
            report.facts["peak GPU memory allocated"] = _gib(torch.cuda.max_memory_allocated(dev))
        report.seconds = time.perf_counter() - started
        report.path = write_report(report, out)  # after every step: a killed doctor leaves what it found
    return report
