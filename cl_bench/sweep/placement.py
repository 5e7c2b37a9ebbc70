"""Where a sweep's workers run: devices x workers per device -> worker slots, each with its device and
torch threads. Pure (no process is started here), so the placement is tested with fake devices.

Without ``devices`` it is the CPU split of before: ``workers`` slots on ``device`` (cpu by default),
``threads`` torch threads each (default: the free cores shared out, so workers x threads <= free
cores). With ``devices`` (``--devices
cuda:0,cuda:1``) every device gets ``workers_per_device`` slots (default 1), in round-robin order
(cuda:0, cuda:1, cuda:0, ...) so that the first runs spread over the devices before any device gets a
second; one small-net run uses a fraction of a modern GPU, so several workers per GPU raise runs/hour.
``workers_per_device`` without ``devices`` puts that many workers on ``device``. Each worker process
runs every one of its runs on its slot's device (cl_bench.sweep.local). Devices are checked by
``cl_bench.trainer.resolve_device``: an unknown name or a CUDA index beyond the visible GPUs is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cl_bench.threads import free_cores
from cl_bench.trainer import resolve_device


class PlacementError(ValueError):
    """Workers and devices that do not fit together; the message names the options."""


@dataclass(frozen=True)
class Slot:
    """One worker: its position, the device torch runs it on, its torch threads, and the device as the
    user named it (shown in the progress display and in each run's Outcome)."""

    index: int
    device: str  # "cpu", "cuda:0", ...: what execute() runs on
    threads: int
    label: str = ""

    @property
    def name(self) -> str:
        """How the progress display and each Outcome name this worker, e.g. ``cuda:1 #4``."""
        return f"{self.label or self.device} #{self.index + 1}"

    @property
    def cuda_index(self) -> int | None:
        """The CUDA device to make current in the worker (torch.cuda.set_device), else None."""
        device = torch.device(self.device)
        return device.index if device.type == "cuda" else None


def parse_devices(text: str | None) -> list[str] | None:
    """``"cuda:0, cuda:1"`` -> ["cuda:0", "cuda:1"]; None or empty text -> None."""
    if text is None:
        return None
    devices = [d.strip() for d in text.split(",")]
    if not any(devices):
        raise PlacementError("--devices needs at least one device, e.g. --devices cuda:0,cuda:1")
    if not all(devices):
        raise PlacementError(f"--devices {text!r} has an empty entry; write e.g. cuda:0,cuda:1")
    return devices


def place_workers(
    *,
    workers: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    devices: Sequence[str] | None = None,
    workers_per_device: int | None = None,
    cores: int | None = None,
) -> list[Slot]:
    """The worker slots, in the order work is handed out. ``workers=0`` (run in the calling process)
    gives one slot, with every core's thread unless ``threads``. ``cores`` defaults to the cores free
    now (cl_bench.threads.free_cores: usable cores less the load average's busy ones), so that by
    default workers x threads never oversubscribe a shared machine.
    Raises PlacementError (a ValueError) for options that conflict, ValueError for a device that does
    not exist (resolve_device)."""
    cores = cores or free_cores()
    if workers is not None and workers < 0:
        raise PlacementError(f"--workers must be >= 0, got {workers}")
    if threads is not None and threads < 1:
        raise PlacementError(f"--threads must be >= 1, got {threads}")
    if workers_per_device is not None and workers_per_device < 1:
        raise PlacementError(f"--workers-per-device must be >= 1, got {workers_per_device}")
    if devices is not None:
        if device is not None:
            raise PlacementError(
                f"give --device or --devices, not both (got --device {device} and --devices "
                f"{','.join(devices)}); --devices places workers on each device listed"
            )
        if workers is not None:
            raise PlacementError(
                f"with --devices, the workers are devices x --workers-per-device; give "
                f"--workers-per-device instead of --workers (got --workers {workers})"
            )
        if not devices:
            raise PlacementError("--devices needs at least one device, e.g. --devices cuda:0,cuda:1")
    elif workers_per_device is not None and workers is not None:
        raise PlacementError(
            f"give --workers or --workers-per-device, not both (got --workers {workers} and "
            f"--workers-per-device {workers_per_device})"
        )
    names = list(devices) if devices is not None else [device or "cpu"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PlacementError(
            f"--devices lists a device twice ({', '.join(twice)}); use --workers-per-device "
            f"for several workers on one device"
        )
    resolved = [str(resolve_device(name)) for name in names]
    if devices is None and workers_per_device is None:  # the CPU split of before: --workers x --threads
        count = cores if workers is None else workers
        per_thread = threads or max(1, cores // max(1, count))
        return [Slot(i, resolved[0], per_thread, names[0]) for i in range(max(1, count))]
    per_device = workers_per_device or 1
    count = per_device * len(names)
    per_thread = threads or max(1, cores // count)
    return [Slot(i, resolved[i % len(names)], per_thread, names[i % len(names)]) for i in range(count)]
