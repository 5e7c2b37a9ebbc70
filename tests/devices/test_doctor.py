"""``cl-bench doctor`` (cl_bench/doctor.py, cl_bench/cli/doctor.py) at tiny scale on the CPU: every
section of the report is there and every check passes. No timing is asserted."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cl_bench import registry
from cl_bench.cli.doctor import doctor as doctor_command
from cl_bench.registry import all_strategies
from cl_bench.tools import doctor as doc


@pytest.fixture
def scratch_registry(monkeypatch):
    """The doctor registers its synthetic scenario when there is no MNIST: not beyond this test."""
    monkeypatch.setattr(registry, "SCENARIOS", dict(registry.all_scenarios()))


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_doctor_on_the_cpu_writes_a_dated_report_with_every_section(tmp_path, scratch_registry):
    lines = []
    report = doc.run_doctor(
        "cpu", "tiny", tmp_path / "out", data_root=tmp_path / "no-data", tests=False, echo=lines.append
    )
    failed = [f"{o.name}: {o.detail}" for o in report.outcomes if o.status == "FAIL"]
    assert report.ok, failed
    assert report.path == tmp_path / "out" / f"doctor-cpu-{report.date}.md"
    text = report.path.read_text()
    assert text.startswith(f"# cl-bench doctor: cpu, {report.date}") and "**OK**" in text
    for title in ["## Device", *(f"## {t}" for t in doc.SECTIONS.values())]:
        assert title in text, title
    assert "| torch | " + torch.__version__ in text and "| CPU instruction set |" in text
    names = {o.name for o in report.outcomes}
    for strategy in all_strategies():
        assert f"{strategy} (mlp, fp32)" in names and f"{strategy} on {doc.SYNTHETIC_SCENARIO}" in names
    assert {"sgd (alexnet, fp32)", "hat (mlp, bf16)", "ewc checkpoint cpu -> cpu"} <= names
    assert {o.name: o.status for o in report.outcomes}["tests/devices"] == "SKIP"
    assert "| synthetic-alexnet | bare " in text and "| synthetic-mlp | hat |" in text
    assert any("no MNIST" in line for line in lines)
    data = json.loads(report.path.with_suffix(".json").read_text())
    assert data["device"] == "cpu" and len(data["outcomes"]) == len(report.outcomes) and len(data["bench"]) == 2
    assert sorted(p.name for p in report.path.parent.iterdir()) == sorted(
        [report.path.name, report.path.with_suffix(".json").name]
        + [f"doctor-cpu-{report.date}-bench-synthetic-{a}.{e}" for a in ("mlp", "alexnet") for e in ("json", "md")]
    )


def test_device_tests_run_in_a_child_pytest_and_failures_carry_its_output(tmp_path):
    folder = tmp_path / "repo" / "tests" / "devices"
    folder.mkdir(parents=True)
    (folder / "test_fine.py").write_text(
        "import os\n\ndef test_device():\n    assert os.environ['CL_BENCH_TEST_DEVICE'] == 'cpu'\n"
    )
    outcome = doc.device_tests(torch.device("cpu"), folder, 120, echo=lambda line: None)
    assert outcome.status == "PASS" and "1 passed" in outcome.detail
    (folder / "test_broken.py").write_text("def test_broken():\n    assert 1 == 2, 'the broken one'\n")
    outcome = doc.device_tests(torch.device("cpu"), folder, 120, echo=lambda line: None)
    assert outcome.status == "FAIL" and "1 failed, 1 passed" in outcome.detail and "the broken one" in outcome.trace
    missing = doc.device_tests(torch.device("cpu"), tmp_path / "nowhere", 120, echo=lambda line: None)
    assert missing.status == "SKIP" and "not a source checkout" in missing.detail


def test_a_failed_check_is_reported_not_raised():
    def broken():
        raise RuntimeError("CUDA error: device-side assert triggered")

    outcome = doc._attempt("checks", "broken", broken, echo=lambda line: None)
    assert outcome.status == "FAIL" and "device-side assert" in outcome.detail and "broken" in outcome.trace
    report = doc.DoctorReport("cpu", "tiny", "2000-01-01", {"torch": torch.__version__}, [outcome], seconds=1.0)
    text = doc.format_report(report)
    assert "**FAILED**: 0 passed, 1 failed" in text and "## Failures" in text and "RuntimeError" in text


def test_the_command_exit_status_and_errors(tmp_path, monkeypatch):
    bad = CliRunner().invoke(doctor_command, ["--device", "tpu", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "Error:" in bad.output and "tpu" in bad.output
    assert CliRunner().invoke(doctor_command, ["--scale", "huge"]).exit_code == 2
    failing = doc.DoctorReport(
        "cpu", "tiny", "2000-01-01", {}, [doc.Outcome("checks", "x", "FAIL", 0.0, "no")], path=Path(tmp_path / "r.md")
    )
    seen = {}

    def fake(device, scale, out, data_root, tests, echo):
        seen.update(device=device, scale=scale, out=out, tests=tests)
        return failing

    monkeypatch.setattr("cl_bench.cli.doctor.run_doctor", fake)
    result = CliRunner().invoke(doctor_command, ["--device", "cpu", "--no-tests", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "FAILED: 0 passed, 1 failed" in result.output
    assert seen == {"device": "cpu", "scale": "tiny", "out": str(tmp_path), "tests": False}
