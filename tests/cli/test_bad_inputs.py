"""The last bad inputs: outputs that cannot be written (checked before any work, and any OSError at
the command line's boundary as one line naming the path), tags that would break `runs list`, and the
Python API given values of the wrong type. Each is one clear error, never a traceback."""

import errno
import os
import re
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from cl_bench.cli import main
from cl_bench.results import load
from cl_bench.store import RunRecord, Store
from cl_bench.store.records import MAX_TAG_LENGTH, check_tags
from cl_bench.sweep import SweepError, load_sweep, parse_sweep

LONG = "s" * 300


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for needle in needles:
        assert needle in res.output, res.output


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.db"
    acc = np.array([[0.9, np.nan], [0.8, 0.7]])
    Store(path).save(RunRecord("r1", "sgd", "split_mnist", 0, {}, {}, {}, "finished", acc))
    return path


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    return path


def read_only(monkeypatch, folder):
    """As root every folder is writable: make ``folder`` read-only to os.access, as for a user."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(folder) else real(p, mode, **kw))


@pytest.mark.parametrize(
    "args, option",
    [
        (["runs", "export", "--out", "{file}/x.csv"], "--out"),
        (["report", "--figures", "{file}/figs"], "--figures"),
        (["report", "--html", "{file}/r.html"], "--html"),
        (["doctor", "--out", "{file}/gpu"], "--out"),
    ],
)
def test_an_output_under_a_file_is_refused_before_any_work(store, a_file, args, option):
    res = invoke(*[a.format(file=a_file) for a in args], *(["--store", store] if args[0] != "doctor" else []))
    one_line_error(res, f"Error: {option}: ", str(a_file))


@pytest.mark.parametrize(
    "args, option",
    [
        (["runs", "export", "--out", "{ro}/x.csv"], "--out"),
        (["report", "--figures", "{ro}/figs"], "--figures"),
        (["report", "--html", "{ro}/r.html"], "--html"),
        (["doctor", "--out", "{ro}/gpu"], "--out"),
    ],
)
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(store, tmp_path, monkeypatch, args, option):
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    res = invoke(*[a.format(ro=ro) for a in args], *(["--store", store] if args[0] != "doctor" else []))
    one_line_error(res, f"Error: {option}: cannot write {ro}", "is read-only")
    assert list(ro.iterdir()) == []


def test_a_300_character_name_is_one_line(store, tmp_path):
    one_line_error(invoke("runs", "export", "--store", store, "--out", tmp_path / f"{LONG}.csv"), "too long")
    res = invoke("runs", "list", "--store", tmp_path / f"{LONG}.db")
    one_line_error(res, "too long for the file system", "...sss")
    assert len(res.output) < 250


def test_any_os_error_at_the_boundary_is_one_line_naming_the_path(store, monkeypatch):
    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/out.csv")

    monkeypatch.setattr("cl_bench.cli.runs.export", denied)
    res = invoke("runs", "export", "--store", store, "--out", "x.csv")
    one_line_error(res, "cannot use /somewhere/out.csv: no permission: choose a folder you can write")


def test_a_broken_pipe_is_not_reported_as_a_bad_path(store, monkeypatch):
    def broken(*_a, **_k):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr("cl_bench.cli.runs.export", broken)
    res = invoke("runs", "export", "--store", store, "--out", "x.csv")
    assert res.exit_code == 1 and "cannot use" not in res.output  # click's own quiet exit


@pytest.mark.parametrize(
    "tag, message",
    [
        ("two\nlines", "control character '\\n'"),
        ("red\x1b[31m", "control character '\\x1b'"),
        ("tab\there", "control character '\\t'"),
        ("x" * (MAX_TAG_LENGTH + 1), f"at most {MAX_TAG_LENGTH} characters, got {MAX_TAG_LENGTH + 1}"),
        ("  ", "cannot be empty"),
    ],
)
def test_bad_tags_are_refused_wherever_they_enter(store, tag, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_tags([tag])
    with pytest.raises(SweepError, match="tags"):
        parse_sweep({"scenario": "split_mnist", "strategies": ["sgd"], "tags": [tag]})
    res = invoke("runs", "tag", "r1", "--add", tag, "--store", store)
    assert res.exit_code == 1 and "Error: " in res.output and "Traceback" not in res.output
    tags = sqlite3.connect(store).execute("SELECT tags FROM runs").fetchone()[0]
    assert tags == "[]"  # nothing written


def test_good_tags_pass_unchanged():
    assert check_tags(["r1", "sweep:mini", "é ü", 3]) == ["r1", "sweep:mini", "é ü", "3"]
    assert check_tags(["x" * MAX_TAG_LENGTH]) == ["x" * MAX_TAG_LENGTH]


@pytest.mark.parametrize("bad", [5, 2.5, None, ["a.db"]])
def test_load_given_a_wrong_type_names_the_argument(bad):
    with pytest.raises(TypeError, match=r"^store must be a results file's path \(str or os.PathLike\) or a Store"):
        load(bad)


def test_load_sweep_given_a_wrong_type_names_the_argument():
    with pytest.raises(TypeError, match="load_sweep: path must be a file path"):
        load_sweep(42)
    with pytest.raises(SweepError, match="expected a mapping"):
        parse_sweep(42)


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("problem", ["a file", "read-only"])
def test_a_log_folder_that_cannot_be_written_is_refused_before_any_data_is_read(
    tmp_path, monkeypatch, command, problem
):
    """``<store>.logs`` is checked when the loggers are made: the missing data root is never reached."""
    store = tmp_path / "s.db"
    if problem == "a file":
        (tmp_path / "s.db.logs").write_text("not a folder")
    else:
        read_only(monkeypatch, tmp_path)
    sweep = tmp_path / "sw.yaml"
    sweep.write_text("name: sw\nscenario: split_mnist\nstrategies: [sgd]\nprotocol: {epochs: 1}\n")
    args = ["run", "--strategy", "sgd", "--scenario", "split_mnist"] if command == "run" else ["sweep", sweep]
    res = invoke(*args, "--store", store, "--logger", "jsonl", "--data-root", tmp_path / "no-data")
    one_line_error(res, "cannot log to", "s.db.logs", "a file, not a folder" if problem == "a file" else "read-only")
