"""The ``cl-bench`` command line: a thin layer over the library, the only code that imports click.

Each command lives in its own module and is imported only when it runs (or when ``--help`` lists it
with its one-line summary, which is written here): ``cl-bench --help`` does not import torch.
"""

from __future__ import annotations

import importlib

import click

from cl_bench.cli.common import os_error_message  # light: click and the value parser, no torch

# name -> (module:attribute, one-line summary shown by `cl-bench --help`)
COMMANDS = {
    "run": ("cl_bench.cli.run:run", "Run one strategy on one scenario and seed; store the accuracy matrix."),
    "list": ("cl_bench.cli.listing:list_", "Strategies with their hyperparameters; scenarios with their options."),
    "demo": ("cl_bench.cli.demo:demo", "A few-minute, reduced-scale demo: SGD and HAT against Joint and Random."),
    "report": ("cl_bench.cli.report:report_command", "Table 1, rho, figures and HTML from a results store."),
    "sweep": ("cl_bench.cli.sweep:sweep_command", "Run a sweep file (or a bundled preset) resumably."),
    "status": ("cl_bench.cli.sweep:status_command", "Finished / failed / pending runs of a sweep file."),
    "bench": ("cl_bench.cli.bench:bench_command", "Training and evaluation throughput against a bare PyTorch loop."),
    "runs": ("cl_bench.cli.runs:runs", "List, show, tag, remove, export runs; merge another store."),
    "doctor": ("cl_bench.cli.doctor:doctor", "Check a device against the CPU, time it, and write a dated report."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            reject_repeated_options(command, rest)
        return name, command, rest

    def invoke(self, ctx: click.Context):
        """The one handler of OSError at the command line's boundary: a file or folder that cannot be
        read or written (permissions, a read-only file system, a name too long) is one line naming it."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # `cl-bench ... | head`: not the user's error
        except OSError as e:
            raise click.ClickException(os_error_message(e)) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The summaries written above, without importing every command's module."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


def reject_repeated_options(command: click.Command, args: list[str]) -> None:
    """An option that takes one value given twice (``--store a --store b``) is an error: click would
    silently keep the last one."""
    single = {}
    for param in command.params:
        if isinstance(param, click.Option) and not param.multiple and not param.count:
            for opt in (*param.opts, *param.secondary_opts):
                single[opt] = param
    seen: dict[str, str] = {}
    for arg in args:
        if arg == "--":
            break
        opt = arg.split("=", 1)[0] if arg.startswith("--") else arg
        param = single.get(opt)
        if param is None:
            continue
        if param.name in seen:
            given = f"{opt} given twice" if seen[param.name] == opt else f"{seen[param.name]} and {opt} both given"
            raise click.UsageError(f"{given}: {command.name} takes one value for {param.opts[0]}")
        seen[param.name] = opt


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cl-bench")
def main():
    """cl-bench: continual-learning benchmarks with the HAT paper's protocol."""


if __name__ == "__main__":
    main()
