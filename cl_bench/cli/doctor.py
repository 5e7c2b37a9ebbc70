"""``cl-bench doctor``: the command over ``cl_bench.tools.doctor`` (options, progress lines, exit status).

Also runnable as ``python -m cl_bench.cli.doctor`` (scripts/gpu_check.sh does, so it works before the
command is listed)."""

from __future__ import annotations

import click
import torch

from cl_bench.cli.common import check_output, user_errors
from cl_bench.tools.doctor import SCALES, run_doctor


@click.command("doctor", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", default=None, help="cpu, cuda, cuda:N [default: cuda if torch sees a GPU, else cpu].")
@click.option(
    "--scale",
    type=click.Choice(list(SCALES)),
    default="tiny",
    show_default=True,
    help="tiny: seconds on a CPU (CI); full: the GPU check, under 8 minutes on a data-centre GPU.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="reports/gpu",
    show_default=True,
    help="Folder of the report (doctor-<device>-<date>.md, .json and the throughput results).",
)
@click.option(
    "--data-root", envvar="CL_BENCH_DATA", help="Dataset folder (MNIST for the short runs) [env CL_BENCH_DATA]."
)
@click.option("--no-tests", is_flag=True, help="Do not run the device tests of a source checkout (tests/devices).")
@click.option("--threads", type=int, help="torch intra-op threads (default: torch's).")
def doctor(device, scale, out, data_root, no_tests, threads):
    """Check that the device computes what the CPU computes, time it, and write a dated report."""
    check_output(out, "--out", folder=True)  # before minutes of checks
    if threads:
        torch.set_num_threads(threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with user_errors():
        report = run_doctor(device, scale, out, data_root, tests=not no_tests, echo=click.echo)
    n = report.counts()
    click.echo(
        f"{'OK' if report.ok else 'FAILED'}: {n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped "
        f"in {report.seconds:.0f} s; report {report.path}"
    )
    if not report.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    doctor()
