"""One self-contained HTML page: the provenance block (store, version, date, and each section's scale with
its verdict on the paper's protocol) and a table of contents at the top, then per section Table 1 with
the notes under it (each row's configuration and seeds, why rho is n/a, HAT's health), the paper's
numbers beside ours (``paper``), every figure (base64 PNG) with its caption, the accuracy matrices, and
the run metadata (code versions, data checksums, protocol, hyperparameters). No external CSS, JS or
fonts, so it opens offline and can be mailed as one file. Written by ``cl-bench report --html out.html``.

The figures come in already rendered (``FigureItem.png``, from build.render_figures); this module draws
nothing itself."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from cl_bench.report.build import RULE, Report
from cl_bench.report.figures import FigureItem, mean_matrices
from cl_bench.report.paper import compared_columns, comparison_cells, correlation_text, paper_values
from cl_bench.report.style import strategy_colors
from cl_bench.report.tables import LEGEND, cell_seeds, row_label, row_notes, section_heading, table_columns
from cl_bench.runner import code_version
from cl_bench.store import RunRecord

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:2em auto;
 max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f4f4f4} td.l,th.l{text-align:left}
figure{margin:1.2em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;margin-top:.3em}
.note{color:#8a5300;background:#fff7e6;border-left:3px solid #f0a000;padding:.3em .6em;margin:.4em 0}
.missing{background:#fdecea;border-left:3px solid #d62728;padding:.5em .8em}
.missing pre,.note code{white-space:pre-wrap;word-break:break-all}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-1px}
details{margin:.2em 0} summary{cursor:pointer}
.meta td{text-align:left}
.prov{background:#f3f7fb;border-left:3px solid #0077bb;padding:.5em .9em;margin:.8em 0}
.prov li{margin:.25em 0} .scale{font-size:.92em;color:#333}
nav.toc{border:1px solid #ddd;padding:.4em 1em;margin:1em 0} nav.toc ol{margin:.2em 0;padding-left:1.4em}
nav.toc ul{margin:.1em 0;padding-left:1.2em;font-size:.92em}
.verdict{font-weight:600}
footer{margin-top:3em;border-top:1px solid #ccc;padding-top:.5em;font-size:.85em;color:#555}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "cl-bench": code_version()}  # the code, not its install record
    for pkg in ("torch", "numpy", "pandas", "matplotlib", "seaborn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _cell(r, key: str, scale: float = 1.0) -> str:
    if np.isnan(r[key]):
        return "n/a"
    if cell_seeds(r, key) < 2:  # one seed: no spread
        return f"{r[key] * scale:.2f}"
    ci = "" if np.isnan(r[f"{key} ci95"]) else f" &plusmn;{r[f'{key} ci95'] * scale:.2f}"
    return f"{r[key] * scale:.2f} ({r[f'{key} std'] * scale:.2f}){ci}"


def table_html(part, colors: dict[str, str]) -> str:
    """Table 1 rows of one section (already sorted, best rho last)."""
    T = int(part["T"].iloc[0])
    cols = table_columns(T)
    head = {"rho<=2": "&rho;<sup>&le;2</sup>", "rho<=T": f"&rho;<sup>&le;{T}</sup>", "A<=T": f"A<sup>&le;{T}</sup> (%)"}
    rows = ["<tr><th class=l>strategy</th><th>seeds</th>" + "".join(f"<th>{head[c]}</th>" for c in cols) + "</tr>"]
    for _, r in part.iterrows():
        seeds = str(r["seeds"]) if r["rho seeds"] == r["seeds"] else f"{r['seeds']} (&rho;: {r['rho seeds']})"
        swatch = f"<span class=swatch style='background:{colors.get(r['strategy'], '#999')}'></span>"
        name = row_label(r)
        rows.append(
            f"<tr><td class=l>{swatch}{_e(name)}</td><td>{seeds}</td>"
            + "".join(f"<td>{_cell(r, c, 100 if c.startswith('A') else 1)}</td>" for c in cols)
            + "</tr>"
        )
    notes = "".join(f"<p class=scale>{_e(n)}</p>" for n in row_notes(part, launch=False))  # commands: below
    return (
        f"<table class=t1>{''.join(rows)}</table>{notes}<p><small>{_e(LEGEND)} Sorted by "
        "&rho;<sup>&le;T</sup>, best last (Table 1).</small></p>"
    )


def comparison_html(part) -> str:
    """The paper's published numbers beside ours for one section ('' when the paper gives none)."""
    scenario = part["scenario"].iloc[0]
    paper = paper_values(scenario)
    if not paper:
        return ""
    T = int(part["T"].max())
    cols = compared_columns(paper)
    name = {"rho<=2": "&rho;<sup>&le;2</sup>", "rho<=T": f"&rho;<sup>&le;{T}</sup>", "A<=T": f"A<sup>&le;{T}</sup> (%)"}
    rows = ["<tr><th class=l>strategy</th>" + "".join(f"<th>{name[c]} ours</th><th>paper</th>" for c in cols) + "</tr>"]
    for _, r in part.iterrows():
        if r["strategy"] not in paper:
            continue
        cells = [x for pair in comparison_cells(r, paper, cols) for x in pair]
        rows.append(f"<tr><td class=l>{_e(row_label(r))}</td>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    out = f"<table>{''.join(rows)}</table>"
    if scenario == "mixture":
        out += (
            f"<p>Spearman rank correlation of our &rho;<sup>&le;{T}</sup> with Table 1's &rho;<sup>&le;8</sup> "
            f"{_e(correlation_text(part, scenario, T))}.</p>"
        )
    return out + f"<p class=scale>{_e(part['scale'].iloc[0])}</p>"


def matrix_html(label: str, acc: np.ndarray, n: int, names: Sequence[str]) -> str:
    T = acc.shape[0]
    head = (
        "<tr><th class=l>after \\ on</th>"
        + "".join(f"<th title='{_e(names[i])}'>{i + 1}</th>" for i in range(T))
        + "</tr>"
    )
    body = "".join(
        "<tr><th class=l>"
        + f"{t + 1}"
        + "</th>"
        + "".join(f"<td>{'' if np.isnan(acc[t, tau]) else f'{100 * acc[t, tau]:.1f}'}</td>" for tau in range(T))
        + "</tr>"
        for t in range(T)
    )
    return (
        f"<details><summary>{_e(label)}: mean accuracy (%) over {n} seed(s)</summary>"
        f"<table>{head}{body}</table></details>"
    )


def _data_fingerprint(r: RunRecord) -> tuple[str, dict]:
    datasets = (r.data or {}).get("datasets", {})
    key = hashlib.sha256(json.dumps(datasets, sort_keys=True).encode()).hexdigest()[:8]
    return key, datasets


def runs_html(records: Sequence[RunRecord], table_accuracy: dict[str, float]) -> str:
    """Run metadata: one row per run, details (hparams, protocol, options, error) on demand, and the
    distinct data sources with their checksums once."""
    sources: dict[str, dict] = {}
    rows = [
        (
            "<tr><th class=l>run</th><th class=l>strategy</th><th class=l>scenario</th><th>seed</th>"
            "<th class=l>status</th><th class=l>tags</th><th class=l>code version</th><th>wall (s)</th>"
            "<th>A<sup>&le;T</sup> (%)</th><th class=l>data</th><th class=l>configuration</th></tr>"
        )
    ]
    for r in sorted(records, key=lambda r: (r.scenario, r.strategy, r.seed, r.run_id)):
        key, datasets = _data_fingerprint(r)
        if datasets:
            sources[key] = datasets
        acc = table_accuracy.get(r.run_id)
        conf = {"hparams": r.hparams, "protocol": r.protocol, "scenario_options": r.scenario_options}
        details = f"<pre>{_e(json.dumps(conf, indent=1, sort_keys=True))}</pre>"
        if r.error:
            details += f"<pre>{_e(r.error[:2000])}</pre>"
        status = r.status if not r.error else f"{r.status}: {r.error.splitlines()[0][:80]}"
        rows.append(
            f"<tr><td class=l><code>{_e(r.run_id)}</code></td><td class=l>{_e(r.strategy)}</td>"
            f"<td class=l>{_e(r.scenario)}</td><td>{r.seed}</td><td class=l>{_e(status)}</td>"
            f"<td class=l>{_e(','.join(r.tags))}</td><td class=l><code>{_e(r.code_version or '?')}</code></td>"
            f"<td>{'' if r.wall_s is None else f'{r.wall_s:.0f}'}</td>"
            f"<td>{'' if acc is None else f'{100 * acc:.2f}'}</td>"
            f"<td class=l>{f'<code>{key}</code>' if datasets else '-'}</td>"
            f"<td class=l><details><summary>show</summary>{details}</details></td></tr>"
        )
    src = [
        (
            "<tr><th class=l>data id</th><th class=l>dataset</th><th class=l>file</th>"
            "<th class=l>sha256</th><th class=l>complete</th></tr>"
        )
    ]
    for key, datasets in sorted(sources.items()):
        for name, info in sorted(datasets.items()):
            files = info.get("files", {}) if isinstance(info, dict) else {}
            for path, sha in sorted(files.items()) or [("-", "-")]:
                src.append(
                    f"<tr><td class=l><code>{key}</code></td><td class=l>{_e(name)}</td>"
                    f"<td class=l><code>{_e(Path(path).name)}</code></td><td class=l><code>{_e(sha)}"
                    f"</code></td><td class=l>{_e(info.get('complete', '?'))}</td></tr>"
                )
    return (
        "<h3>Runs</h3><table class=meta>" + "".join(rows) + "</table>"
        "<h3>Data sources</h3><table class=meta>" + "".join(src) + "</table>"
    )


def _verdict(scale_text: str) -> str:
    """The scale paragraph with its verdict on the paper's protocol in bold."""
    for mark in ("Not the paper's full protocol", "This is the paper's full protocol"):
        if mark in scale_text:
            head, _, tail = scale_text.partition(mark)
            return f"{_e(head)}<span class=verdict>{_e(mark)}</span>{_e(tail)}"
    return _e(scale_text)


TOC_NAMES = {
    "fig3_rho": "Fig. 3: forgetting ratio",
    "fig3_acc": "Fig. 3: mean accuracy",
    "accuracy_matrices": "Accuracy matrices (heatmaps)",
    "fig4_hat_grid": "Fig. 4: HAT over s_max × c",
    "fig5_capacity_peers": "Fig. 5 beside HAT's peers: capacity after each task",  # before fig5_capacity:
    "fig6_reuse_peers": "Fig. 6 beside HAT's peers: weight reuse",  # the first matching prefix names it
    "fig5_capacity": "Fig. 5: capacity usage",
    "fig6_reuse": "Fig. 6: weight reuse",
    "fig7_compression": "Fig. 7: accuracy vs compression",
}


def _toc_name(item: FigureItem) -> str:
    """A figure's short name in the contents."""
    return next((v for k, v in TOC_NAMES.items() if item.name.startswith(k)), item.name)


def render_html(report: Report, items: Sequence[FigureItem], paper: bool = False) -> str:
    colors = strategy_colors(m.record.strategy for s in report.sections for m in s.metrics)
    filters = {k: v for k, v in report.filters.items() if v not in ([], None, False, "", {})}
    filters.pop("store", None)
    table = report.table
    parts = {
        s.key: (
            table
            if table.empty
            else table[
                (table["scenario"] == s.key[0]) & (table["options"] == s.key[1]) & (table["protocol"] == s.key[2])
            ]
        )
        for s in report.sections
    }
    anchor = {s.key: f"s{k + 1}" for k, s in enumerate(report.sections)}
    out = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        "<title>cl-bench report</title><style>" + CSS + "</style></head><body>",
        "<h1>cl-bench report</h1>",
        "<div class=prov id=provenance><b>Provenance.</b> "
        + _e(report.footer)
        + (f" Filters: <code>{_e(json.dumps(filters))}</code>." if filters else "")
        + f" {len(report.records)} selected run(s), {sum(r.status == 'finished' for r in report.records)} "
        f"finished.<ul>"
        + "".join(
            f"<li><a href='#{anchor[s.key]}'>{_e(s.title)}</a>: {_verdict(s.scale().text())}</li>"
            for s in report.sections
        )
        + f"</ul><small>{_e(RULE)} Report built with "
        + ", ".join(f"{k} {_e(v)}" for k, v in _versions().items())
        + "; each run's own code version is in the run table.</small></div>",
    ]
    toc = ["<nav class=toc><b>Contents</b><ol><li><a href='#provenance'>Provenance</a></li>"]
    for s in report.sections:
        a = anchor[s.key]
        sub = [f"<li><a href='#{a}-table'>Table 1</a></li>"]
        if paper and len(parts[s.key]) and paper_values(s.key[0]):
            sub.append(f"<li><a href='#{a}-paper'>Ours beside the paper's</a></li>")
        sub += [
            f"<li><a href='#{_e(i.name)}'>{_e(_toc_name(i))}</a></li>"
            for i in items
            if i.section == s.key and i.png is not None
        ]
        sub.append(f"<li><a href='#{a}-matrices'>Accuracy matrices</a></li>")
        toc.append(f"<li><a href='#{a}'>{_e(s.title)}</a><ul>{''.join(sub)}</ul></li>")
    toc.append("<li><a href='#runs'>Run metadata</a></li></ol></nav>")
    out += toc
    if report.missing:
        out.append(
            "<div class=missing><b>Missing references.</b> The forgetting ratio &rho; (Eq. 6) needs "
            "the Joint and Random runs of the same scenario, options, seed, protocol and data; the "
            "cells and figures that need them are marked n/a or left out. Launch:<pre>"
            + "\n".join(_e(c) for c in report.missing)
            + "</pre></div>"
        )
    if not report.sections:
        out.append("<p class=note>No finished runs match.</p>")
    table_accuracy = {m.record.run_id: float(m.acc_upto[-1]) for s in report.sections for m in s.metrics}
    all_variants = report.all_variants
    for sec in report.sections:
        a, part = anchor[sec.key], parts[sec.key]
        out.append(f"<h2 id='{a}'>{_e(section_heading(sec.key, part) if len(part) else sec.title)}</h2>")
        out.append(f"<p class=scale>{_verdict(sec.scale().text())}</p>")
        out.append(f"<h3 id='{a}-table'>Table 1: forgetting ratio</h3>")
        out.append(
            table_html(part, colors)
            if len(part)
            else "<p class=note>No row to show here: only reference runs (Joint/Random), or no strategy "
            "run at its default configuration (see below).</p>"
        )
        out += [f"<p class=note>{_e(n)}</p>" for n in report.extras.get(sec.key, [])]
        out += [f"<p class=note>{_e(n)}</p>" for n in sec.remarks(all_variants)]
        launch = sec.launch(all_variants)
        if launch:
            out.append(
                "<p class=note>Missing references here: <code>"
                + "</code>; <code>".join(_e(c) for c in launch)
                + "</code></p>"
            )
        if paper and len(part) and paper_values(sec.key[0]):
            out.append(f"<h3 id='{a}-paper'>Ours beside the paper's</h3>" + comparison_html(part))
        out.append(f"<h3 id='{a}-figures'>Figures</h3>")
        for item in (i for i in items if i.section == sec.key):
            if item.png is None:
                out.append(f"<p class=note><b>{_e(item.name)}</b> not drawn: {_e(item.note)}</p>")
                continue
            b64 = base64.b64encode(item.png).decode("ascii")
            out.append(
                f"<figure id='{_e(item.name)}'><img alt='{_e(item.name)}' "
                f"src='data:image/png;base64,{b64}'><figcaption><b>{_e(item.name)}</b>: "
                f"{_e(item.caption)}</figcaption></figure>"
            )
        out.append(f"<h3 id='{a}-matrices'>Accuracy matrices (rows: after task t; columns: task &tau;)</h3>")
        names = sec.task_names()
        out.append("<p><small>Tasks: " + _e(", ".join(f"{i + 1} = {n}" for i, n in enumerate(names))) + "</small></p>")
        out += [matrix_html(label, acc, n, names) for label, _s, acc, n in mean_matrices(sec, all_variants)]
    out.append("<h2 id=runs>Run metadata</h2>")
    out.append(runs_html(report.records, table_accuracy))
    out.append(f"<footer>{_e(report.footer)}</footer></body></html>")
    return "\n".join(out)


def write_html(report: Report, items: Sequence[FigureItem], path: str | Path, paper: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, items, paper), encoding="utf-8")
    return path
