"""The ``cl-bench doctor`` report: its records (``Outcome``, ``DoctorReport``), its sections, and writing
it out: the dated markdown file, its JSON twin and each throughput result (``cl-bench bench``'s files).
Running the checks is ``cl_bench.tools.doctor``'s job; this module only records and formats what they found."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl_bench.tools import device_checks as dc
from cl_bench.tools.bench_report import write_result

SECTIONS = {  # the report's sections after the facts, in the order they run
    "checks": "Cross-device checks (the device against the CPU)",
    "tests": "Device tests (tests/devices)",
    "throughput": "Throughput against the bare loop",
    "runs": "Short runs (runner.execute)",
}


@dataclass
class Outcome:
    """One line of the report: a check, its status (PASS, FAIL or SKIP), its time and what it found."""

    section: str
    name: str
    status: str
    seconds: float
    detail: str = ""
    trace: str = ""  # the end of a traceback or of a child's output, for a FAIL


@dataclass
class DoctorReport:
    device: str
    scale: str
    date: str
    facts: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)
    bench: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    path: Path | None = None
    pending: list[str] = field(default_factory=list)  # sections not run yet (the report of a killed doctor)

    @property
    def ok(self) -> bool:
        return not self.pending and all(o.status != "FAIL" for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        return {s: sum(o.status == s for o in self.outcomes) for s in ("PASS", "FAIL", "SKIP")}


def report_stem(report: DoctorReport) -> str:
    return f"doctor-{report.device.replace(':', '-')}-{report.date}"


def write_report(report: DoctorReport, out: str | Path) -> Path:
    """The markdown report, its JSON twin and each throughput result (cl-bench bench's files)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report)
    for result in report.bench:
        write_result(result, folder / f"{stem}-bench-{result['config']['scenario']}.json")
    path = folder / f"{stem}.md"
    path.write_text(format_report(report))
    data = {k: v for k, v in dataclasses.asdict(report).items() if k not in ("path", "bench")} | {"ok": report.ok}
    data["bench"] = [
        {k: r[k] for k in ("config", "networks", "train", "eval", "train_ratio", "eval_ratio")} for r in report.bench
    ]
    path.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def format_report(report: DoctorReport) -> str:
    n = report.counts()
    tol = [("fp32", dc.FP32), ("bf16", dc.BF16)]
    verdict = "OK" if report.ok else "FAILED" if n["FAIL"] else "INCOMPLETE"
    lines = [
        f"# cl-bench doctor: {report.device}, {report.date}",
        "",
        f"**{verdict}**: {n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped "
        f"in {report.seconds:.0f} s (scale {report.scale}).",
        "",
    ]
    if report.pending:
        lines += [f"Not run (the doctor stopped before them): {', '.join(SECTIONS[s] for s in report.pending)}.", ""]
    lines += ["## Device", "", "| fact | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.facts.items()]
    for section, title in SECTIONS.items():
        lines += ["", f"## {title}", ""]
        if section == "checks":
            lines += [
                "Tiny runs (dropout off, TF32 off) compared with the CPU's. Tolerances: on the CPU none (the "
                "same seed gives the same numbers); on another device "
                + "; ".join(
                    f"{p}: losses {t.loss:g} relative, logits {t.logit:g} relative, "
                    f"{t.samples} test prediction(s) per task"
                    for p, t in tol
                )
                + ".",
                "",
            ]
        if section == "throughput":
            if report.scale == "tiny":
                lines += [
                    "Scale tiny: a few batches per loop, too short for the timings to mean anything; they show "
                    "that every loop runs. Use --scale full for numbers.",
                    "",
                ]
            lines += _bench_table(report.bench)
        lines += ["| check | status | seconds | detail |", "|---|---|---|---|"]
        lines += [
            f"| {o.name} | {o.status} | {o.seconds:.1f} | {_cell(o.detail)} |"
            for o in report.outcomes
            if o.section == section
        ]
    failed = [o for o in report.outcomes if o.status == "FAIL"]
    if failed:
        lines += ["", "## Failures", ""]
        for o in failed:
            lines += [f"### {o.name}", "", o.detail, ""] + (["```", o.trace.rstrip(), "```", ""] if o.trace else [])
    return "\n".join(lines) + "\n"


def _bench_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | loop | network | train s/10k | train samples/s | vs bare | eval s/10k | vs bare |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for name, r in result["train"].items():
            e, ratio, eratio = result["eval"][name], result["train_ratio"].get(name), result["eval_ratio"].get(name)
            lines.append(
                f"| {result['config']['scenario']} | {name} | {result['networks'][name]} "
                f"| {r['s_per_10k']:.2f} | {r['samples_per_s']:.0f} | {_ratio(ratio)} "
                f"| {e['s_per_10k']:.3f} | {_ratio(eratio)} |"
            )
    return lines + [""] if results else []


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
