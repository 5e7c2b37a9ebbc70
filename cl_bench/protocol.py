"""The training protocol's settings: every knob of the HAT authors' code, their valid ranges, the
presets, and the one parser from text or typed values (cl_bench.values). The protocol itself (the loop
that applies them) is cl_bench.trainer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cl_bench.ranges import Range
from cl_bench.values import parse_like


@dataclass
class Protocol:
    """Every knob of the training protocol; the defaults are the HAT authors' code's."""

    lr: float = 0.05
    lr_factor: float = 3.0
    lr_patience: int = 5
    lr_min: float = 1e-4
    epochs: int = 200
    batch_size: int = 64
    eval_batch_size: int = 1024  # larger than the reference's 64: same accuracy, faster
    eval_train_each_epoch: bool = False  # the authors' code did it only to print; +~20% time
    clip_grad: float | None = None  # None: the strategy's own threshold (as the authors' code)
    # Execution settings, not the reference's: they change results at the level of float rounding
    # (channels_last: another conv algorithm) or more (bf16), so they are part of a run's identity.
    precision: str = "fp32"  # "bf16": autocast forward passes (CPU AMX, CUDA); weights stay fp32
    channels_last: bool = False  # NHWC weights for conv nets (faster oneDNN kernels on CPU)

    def __post_init__(self):
        """Every knob in its range, whichever way the protocol was made (CLI, sweep file, Python), so a
        run that could only end at chance (epochs=0, lr=-1) is refused before any work."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in PROTOCOL_RANGES:
                PROTOCOL_RANGES[f.name].check(value, f"protocol {f.name!r}", type(f.default))
            elif isinstance(f.default, bool) and not isinstance(value, bool):
                raise ValueError(f"protocol {f.name!r} must be true or false, got {value!r}")
        if self.lr_min > self.lr:  # Plateau would count as stopped before the first epoch
            raise ValueError(
                f"protocol 'lr_min' must be <= lr (training stops once lr < lr_min), "
                f"got lr_min={self.lr_min:g} with lr={self.lr:g}"
            )

    def replace(self, **changes) -> Protocol:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"unknown protocol setting(s) {sorted(unknown)}; valid: {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)


PRECISIONS = ("fp32", "bf16")

# The valid range of every knob but the bools, checked by Protocol.__post_init__ and named in its errors.
PROTOCOL_RANGES = {
    "lr": Range(above=0),
    "lr_factor": Range(above=1),
    "lr_patience": Range(at_least=1),
    "lr_min": Range(at_least=0),
    "epochs": Range(at_least=1),
    "batch_size": Range(at_least=1),
    "eval_batch_size": Range(at_least=1),
    "clip_grad": Range(above=0, optional=True),
    "precision": Range(choices=PRECISIONS),
}

# Settings added after runs were stored: hashed into a run's id only when they differ from these
# defaults, so earlier runs keep their ids (cl_bench.runner.RunConfig.run_id).
LATER_SETTINGS = {"precision": "fp32", "channels_last": False}

PRESETS: dict[str, Protocol] = {
    "paper": Protocol(),
    # For demos and smoke runs on a laptop CPU: a few epochs, a faster lr decay. Not the paper's.
    "quick": Protocol(epochs=3, lr_patience=1),
}


def protocol_from_dict(values: dict[str, Any] | None, preset: str = "paper", where: str = "protocol") -> Protocol:
    """The preset with ``values`` set: text or typed values, parsed by the one parser (cl_bench.values);
    unknown names and values of the wrong type are errors that name the setting."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    values = dict(values or {})
    valid = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"unknown protocol setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return base.replace(**{k: parse_like(v, getattr(base, k), f"{where} {k!r}") for k, v in values.items()})
