"""``cl-bench runs``: the runs of a results store: list (filtered), show one, tag, remove, export, merge,
import (runs a failed save wrote to files: cl_bench.store.save_or_spill).

``list``, ``show`` and ``export`` only read the store (``Store.open_read``); ``tag``, ``remove`` and
``merge`` write it (cl_bench.store.admin). A run is named by its id or a prefix of exactly one id. Every
subcommand needs an existing store: a missing one is an error, never a new empty store.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import click
import numpy as np

from cl_bench.cli.common import check_output, key_values, user_errors
from cl_bench.metrics import mean_upto
from cl_bench.report import format_accuracy_matrix, run_health
from cl_bench.report.grouping import check_where_names, matches_where
from cl_bench.store import DEFAULT_STORE, Attempt, RunRecord, Store, StoreError, read_spilled
from cl_bench.store.admin import FORMATS, delete, export, merge_from, resolve_run_ids

STATUSES = ("finished", "failed")

store_option = click.option("--store", default=DEFAULT_STORE, show_default=True, help="SQLite results file.")


def filter_options(fn):
    """The run filters of ``list`` and ``export``."""
    for option in reversed(
        [
            click.option("--strategy", "strategies", multiple=True, help="Only this strategy (repeatable)."),
            click.option("--scenario", "scenarios", multiple=True, help="Only this scenario (repeatable)."),
            click.option("--seed", "seeds", type=int, multiple=True, help="Only this seed (repeatable)."),
            click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable: any of them)."),
            click.option("--status", "statuses", type=click.Choice(STATUSES), multiple=True, help="Only this status."),
            click.option(
                "--where",
                "where_pairs",
                multiple=True,
                metavar="NAME=VALUE",
                help="Only runs whose hyperparameter, protocol setting or scenario option NAME has VALUE "
                "(repeatable: all of them), e.g. --where epochs=5 --where lr=0.05.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def runs():
    """The runs of a results store: list, show, tag, remove, export, merge another store."""


@runs.command("list", short_help="List the stored runs, filtered.")
@store_option
@filter_options
def list_(store, strategies, scenarios, seeds, tags, statuses, where_pairs):
    """The stored runs (filtered): id, strategy, scenario, seed, status, tags, A<=T (%), wall time."""
    where = key_values(where_pairs, "--where")
    with user_errors(StoreError):
        records = Store.open_read(store).query()
        keep = select(records, strategies, scenarios, seeds, tags, statuses, where)
    if not keep:
        click.echo(f"no runs in {store}" if not records else f"no run matches ({len(records)} in {store})")
        return
    rows = [
        (
            r.run_id,
            r.strategy,
            r.scenario,
            str(r.seed),
            r.status,
            ",".join(r.tags) or "-",
            final_accuracy(r),
            duration(r.wall_s),
        )
        for r in keep
    ]
    click.echo(columns(("run id", "strategy", "scenario", "seed", "status", "tags", "A<=T", "wall"), rows))
    click.echo(f"{len(keep)} of {len(records)} run(s)" if len(keep) < len(records) else f"{len(keep)} run(s)")


@runs.command(short_help="One run in full: configuration, accuracy matrix, attempts, history.")
@click.argument("run_id")
@store_option
def show(run_id, store):
    """One run: configuration, protocol, scenario options, data, identity, accuracy matrix, attempts,
    history. RUN_ID may be a prefix of exactly one run's id."""
    with user_errors(StoreError):
        db = Store.open_read(store)
        [full] = resolve_run_ids(db, [run_id])
        r, attempts = db.get(full), db.attempts(full)
    click.echo("\n".join(describe(r, attempts)))


@runs.command(short_help="Add tags to stored runs.")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--add", "tags", multiple=True, required=True, help="Tag to add (repeatable).")
@store_option
def tag(run_ids, tags, store):
    """Add tags to stored runs (RUN_ID: an id or a prefix of one). Tags never change a run's id."""
    with user_errors(StoreError):
        ids = resolve_run_ids(Store.open_read(store), run_ids)
        changed = Store(store).add_tags(ids, list(tags))
    click.echo(
        f"tagged {changed} run(s)" + (f" ({len(ids) - changed} already had the tag(s))" if changed < len(ids) else "")
    )


@runs.command(short_help="Delete runs (asks first; never a run being run now).")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@store_option
def remove(run_ids, yes, store):
    """Delete runs with their accuracy matrices and attempts (RUN_ID: an id or a prefix of one). A run
    that a live process is running now is refused."""
    with user_errors(StoreError):
        db = Store.open_read(store)
        ids = resolve_run_ids(db, run_ids)
        records = {r.run_id: r for r in db.query(f"run_id IN ({','.join('?' * len(ids))})", tuple(ids))}
    for run_id in ids:
        r = records[run_id]
        click.echo(f"{run_id}  {r.strategy} on {r.scenario}, seed {r.seed}, {r.status}")
    if not yes:
        click.confirm(f"remove these {len(ids)} run(s) from {store}?", abort=True)
    with user_errors(StoreError):
        removed = delete(Store(store), ids)
    click.echo(f"removed {len(removed)} run(s)")


@runs.command("export", short_help="Write the runs, filtered, to a CSV or JSON file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="csv: tidy, one row per run and accuracy cell; json: one object per run.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
@store_option
@filter_options
def export_command(fmt, out, store, strategies, scenarios, seeds, tags, statuses, where_pairs):
    """Write the runs (filtered) to a CSV or JSON file."""
    where = key_values(where_pairs, "--where")
    check_output(out, "--out")
    with user_errors(StoreError):
        db = Store.open_read(store)
        keep = select(db.query(), strategies, scenarios, seeds, tags, statuses, where)
        n = export(db, out, fmt, [r.run_id for r in keep])
    click.echo(f"wrote {n} run(s) to {out}")


@runs.command(short_help="Copy another store's runs into this one, without duplicates.")
@click.argument("other", type=click.Path(dir_okay=False))
@store_option
def merge(other, store):
    """Copy the runs of the store OTHER that this store lacks, with their accuracy and attempts. A run
    both hold is skipped when identical; when they differ, this store's run is kept (a failed one gives
    way to OTHER's finished one) and the conflict is listed. OTHER is only read."""
    with user_errors(StoreError):
        _existing(store, "merge into")
        added, skipped, conflicts = merge_from(Store(store), other)
    click.echo(
        f"merged {other} into {store}: {len(added)} run(s) added, {len(skipped)} already here, "
        f"{len(conflicts)} conflict(s)"
    )
    for conflict in conflicts:
        click.echo(f"  conflict {conflict.describe()}")


@runs.command("import", short_help="Store runs that a failed save wrote to files.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@store_option
def import_command(files, store):
    """Store each FILE, a run cl-bench wrote beside the store when saving it failed (the error named
    the file), as ``cl-bench run`` would have; each file is removed once its run is stored."""
    with user_errors(StoreError):
        records = [(path, read_spilled(path)) for path in files]  # every file checked before writing
        _existing(store, "import into")
        db = Store(store)
        for path, rec in records:
            saved = db.save(rec)
            kept = " (a finished result of this run was already stored and stays)" if saved.kept else ""
            Path(path).unlink()
            click.echo(f"stored {rec.status} run {rec.run_id} from {path} in {store}{kept}; removed {path}")


def _existing(store: str, doing: str) -> None:
    """A missing store is an error here, not a new empty store."""
    if not Path(store).exists():
        raise StoreError(f"no store at {store} to {doing} (a mistyped --store?); it must exist already")
    Store.open_read(store)


# ---- selecting ---------------------------------------------------------------------------------------
def select(
    records: Sequence[RunRecord],
    strategies=(),
    scenarios=(),
    seeds=(),
    tags=(),
    statuses=(),
    where: Mapping[str, str] | None = None,
) -> list[RunRecord]:
    """The filters of ``list`` and ``export``. A ``where`` name that no run has is an error (a typo would
    otherwise select nothing)."""
    where = dict(where or {})
    check_where_names(records, where)
    return [
        r
        for r in records
        if (not strategies or r.strategy in strategies)
        and (not scenarios or r.scenario in scenarios)
        and (not seeds or r.seed in seeds)
        and (not tags or set(tags) & set(r.tags))
        and (not statuses or r.status in statuses)
        and matches_where(r, where)
    ]


# ---- formatting --------------------------------------------------------------------------------------
def final_accuracy(r: RunRecord) -> str:
    """A<=T (%): the mean accuracy over every task after the last one, for a run that measured it all."""
    if r.accuracy is None or np.isnan(r.accuracy[-1]).any():
        return "-"
    return f"{100 * mean_upto(r.accuracy)[-1]:.1f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    return f"{minutes}m{int(seconds % 60):02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(v)) for v in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header, *rows])


def settings(values: Mapping | None) -> str:
    items = [
        f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}"
        for k, v in sorted((values or {}).items())
        if v is not None
    ]
    return ", ".join(items) or "-"


def describe(r: RunRecord, attempts: Sequence[Attempt]) -> list[str]:
    """``runs show``: the run, section by section."""
    lines = [
        f"run {r.run_id}: {r.strategy} on {r.scenario}, seed {r.seed}: {r.status}",
        f"  tags:             {', '.join(r.tags) or '-'}",
        f"  started:          {when(r.started)}   finished: {when(r.finished)}   wall: {duration(r.wall_s)}"
        + _sittings(r),
        f"  code version:     {r.code_version or '-'}",
        *_wrapped("hyperparameters:  ", settings(r.hparams)),
        *_wrapped("protocol:         ", settings(r.protocol)),
        *_wrapped("scenario options: ", settings(r.scenario_options)),
        *_wrapped("identity:         ", settings(r.identity)),
    ]
    if r.error:
        lines += ["  error:            " + r.error.strip().splitlines()[0]]
    lines += ["", "data:"] + _data(r.data)
    if r.accuracy is not None:
        lines += ["", f"accuracy (%), A<=T {final_accuracy(r)}:", format_accuracy_matrix(r.accuracy)]
    else:
        lines += ["", "accuracy: none measured"]
    if r.valid_accuracy is not None:
        lines += ["", "validation accuracy (%), what selection reads:", format_accuracy_matrix(r.valid_accuracy)]
    lines += _mask_learning(r)
    lines += ["", "attempts:"] + ([_attempt(a) for a in attempts] or ["  - (none recorded)"])
    lines += ["", "history:"] + _history(r.history)
    if r.monitoring:
        lines += ["", f"monitoring: {', '.join(sorted(r.monitoring))}"]
    return lines


def _mask_learning(r: RunRecord) -> list[str]:
    """HAT's masks per task: the share of each layer's units whose on/off state left that of the random
    initial embedding, and the capacity held after the task (cl_bench.strategies.hat_mask_learning)."""
    mon = (r.monitoring or {}).get("hat") or {}
    learning = mon.get("mask_learning") or {}
    moved, layers = learning.get("moved"), mon.get("layers")
    if not moved or not layers:
        return []
    health = run_health(r)
    capacity = learning.get("capacity") or []
    rows = [
        [str(t + 1), *(f"{100 * v:.1f}" for v in per_layer), f"{100 * health.moved[t]:.1f}"]
        + ([f"{100 * capacity[t]:.1f}"] if t < len(capacity) else [])
        for t, per_layer in enumerate(moved)
    ]
    header = ["task", *layers, "all units"] + (["capacity used"] if capacity else [])
    return ["", "HAT mask learning (% of units that left their initial on/off state):", columns(header, rows)]


def _sittings(r) -> str:
    """A resumed run's wall time is over every sitting, so it can exceed finished - started: say so."""
    if r.wall_s is None or r.started is None or r.finished is None:
        return ""
    return "   (over several sittings: resumed from a checkpoint)" if r.wall_s > r.finished - r.started + 1 else ""


def _wrapped(label: str, text: str) -> list[str]:
    return textwrap.wrap(
        text, 100, initial_indent="  " + label, subsequent_indent=" " * (2 + len(label)), break_on_hyphens=False
    )


def _attempt(a: Attempt) -> str:
    line = f"  {a.attempt}. {a.status:<8} {when(a.started)}  {duration(a.wall_s):>7}  {a.code_version or '-'}"
    if a.replaced:
        line += "  (its result was replaced by a later run)"
    return line + (f"  {a.error.strip().splitlines()[0]}" if a.error else "")


def _data(data: Mapping | None) -> list[str]:
    data = data or {}
    lines = [
        f"  task {t.get('name', i)}: {t.get('classes', '?')} classes, {t.get('train', '?')} train / "
        f"{t.get('valid', '?')} valid / {t.get('test', '?')} test"
        for i, t in enumerate(data.get("tasks") or [])
    ]
    datasets = data.get("datasets") if isinstance(data.get("datasets"), dict) else {}
    for name, info in sorted(datasets.items()):
        files = info.get("files") if isinstance(info, dict) else None
        lines.append(f"  data set {name}" + (f": {len(files)} file(s) with checksums" if files else ""))
    rest = {k: v for k, v in data.items() if k not in ("tasks", "datasets", "options")}
    lines += [f"  {k}: {json.dumps(v, default=str)[:200]}" for k, v in sorted(rest.items())]
    return lines or ["  - (not recorded)"]


def _history(history: Sequence[Mapping]) -> list[str]:
    """Per task: epochs trained, the last lr, the best validation accuracy, seconds."""
    by_task: dict[int, list[Mapping]] = {}
    for h in history:
        by_task.setdefault(h.get("task", 0), []).append(h)
    if not by_task:
        return ["  - (none recorded)"]
    rows = []
    for t, logs in sorted(by_task.items()):
        accs = [h["valid_acc"] for h in logs if h.get("valid_acc") is not None]
        rows.append(
            (
                str(t + 1),
                str(len(logs)),
                f"{logs[-1].get('lr', float('nan')):.3g}",
                f"{100 * max(accs):.1f}" if accs else "-",
                f"{sum(h.get('seconds') or 0 for h in logs):.1f}",
            )
        )
    return [
        "  " + line for line in columns(("task", "epochs", "last lr", "best valid acc", "seconds"), rows).splitlines()
    ]
