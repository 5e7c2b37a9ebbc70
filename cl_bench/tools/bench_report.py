"""``cl-bench bench``'s result as files: the JSON it measured and a markdown page beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def format_markdown(result: dict[str, Any]) -> str:
    """The result as a markdown page (with the ``command``, ``environment`` and ``load_average_after``
    the CLI adds to what ``run_bench`` returns)."""
    c, env = result["config"], result["environment"]
    settings = (
        [c["precision"]]
        + (["channels_last"] if c["channels_last"] else [])
        + (["torch.compile"] if c["compile"] else [])
    )
    lines = [
        f"# cl-bench bench: {', '.join(c['strategies'])} on {c['scenario']} (task {c['task']})",
        "",
        f"`{result['command']}`",
        "",
        f"- torch {env['torch']}, python {env['python']}, cl-bench {env['cl_bench']}",
        (
            f"- device {env['device']} ({env['device_name']}), {env['threads']} threads "
            f"({env['interop_threads']} inter-op), {env['cpu_count']} CPUs"
        ),
        (
            f"- load average before {format_load(env['load_average'])}, "
            f"after {format_load(result['load_average_after'])}"
        ),
        (
            f"- {c['samples']} samples, batch {c['batch_size']} (evaluation {c['eval_batch_size']}), lr {c['lr']}, "
            f"{', '.join(settings)}, warm-up {c['warmup']} samples, {c['reps']} repetitions rotating the order"
        ),
        f"- scenario prepared in {result['prepare_s']:.2f} s",
        "",
        (
            "| loop | network | train s/10k | train samples/s | vs bare | vs bare (CPU time) | eval s/10k "
            "| eval samples/s | vs bare | vs bare (CPU time) | train reps (s) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["train"].items():
        e = result["eval"][name]
        ratios = [
            _ratio(result, key, name) for key in ("train_ratio", "train_cpu_ratio", "eval_ratio", "eval_cpu_ratio")
        ]
        lines.append(
            f"| {name if name.startswith('bare') else f'{name} `train_epoch`'} | {result['networks'][name]} "
            f"| {r['s_per_10k']:.2f} | {r['samples_per_s']:.0f} | {ratios[0]} | {ratios[1]} "
            f"| {e['s_per_10k']:.3f} | {e['samples_per_s']:.0f} | {ratios[2]} | {ratios[3]} "
            f"| {', '.join(f'{s:.3f}' for s in r['seconds'])} |"
        )
    lines += [
        "",
        (
            "Ratios are of medians, strategy / the bare loop on the same network (1.0 = the floor; "
            "throughput as a fraction of the bare loop's is 1 / ratio); 'CPU time' ratios are of the "
            "process's CPU seconds (CPU runs only), steadier than wall time on a busy machine."
        ),
        "",
    ]
    return "\n".join(lines)


def _ratio(result: dict[str, Any], key: str, name: str) -> str:
    """A ratio of ``result[key]`` to 3 decimals; blank for a bare loop, or where it was not measured
    (CPU time on a GPU; files written before CPU time was recorded)."""
    value = result.get(key, {}).get(name)
    return "" if value is None else f"{value:.3f}"


def format_load(values) -> str:
    """A load average for people: three numbers, or n/a."""
    return "n/a" if values is None else " ".join(f"{v:.2f}" for v in values)


def write_result(result: dict[str, Any], out: str | Path) -> Path:
    """Write ``result`` as JSON to ``out`` (suffix .json) and as markdown beside it (.md); the JSON path."""
    path = Path(out).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    path.with_suffix(".md").write_text(format_markdown(result))
    return path
