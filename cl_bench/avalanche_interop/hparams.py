"""Hyperparameters of an Avalanche strategy, read from its class's constructor.

The scalar keyword arguments (float, int, bool, str, or Optional/Union of one) become a cl-bench
``Hparams`` dataclass (``-p ewc_lambda=5000``), with the help text of the Avalanche docstring, plus
``net``, the cl-bench network variant. Arguments the adapter sets from the protocol are left out.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any

from cl_bench.avalanche_interop.library import PREFIX
from cl_bench.strategy import HparamError
from cl_bench.values import BadValue, parse_value

# Constructor arguments the adapter sets from the cl-bench protocol (never hyperparameters).
FRAMEWORK_ARGS = frozenset(
    {
        "self",
        "model",
        "optimizer",
        "criterion",
        "train_mb_size",
        "train_epochs",
        "eval_mb_size",
        "device",
        "plugins",
        "evaluator",
        "eval_every",
        "peval_mode",
    }
)
SCALARS = (float, int, bool, str)
NETS = ("base", "hat", "lfl")  # the values of ``net`` (nets.build_network's variants)


def _scalar_kind(annotation: Any, default: Any) -> type | None:
    """float/int/bool/str for an argument annotated (or defaulting) as one, Optional of one, or a
    Union whose first member is one (``Union[float, Sequence[float]]`` -> float); else None."""
    if annotation in SCALARS:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg in SCALARS:
                return arg
        return None
    if annotation is inspect.Parameter.empty and default is not None and type(default) in SCALARS:
        return type(default)
    return None


def _param_help(doc: str, name: str) -> str:
    """The first sentence of ``:param name:`` in an Avalanche docstring."""
    match = re.search(rf":param {re.escape(name)}:(.*?)(?=:param |:return|\Z)", doc or "", re.DOTALL)
    text = " ".join(match.group(1).split()) if match else ""
    return text.split(". ")[0].rstrip(".")


def hparams_dataclass(short: str, av_cls: type, net: str) -> type:
    """A cl-bench ``Hparams`` dataclass from the constructor's scalar keyword arguments, with ``net``
    defaulting to ``net``. Arguments without an Avalanche default stay required; non-scalar ones with a
    default keep it."""
    doc = av_cls.__init__.__doc__ or ""
    required, optional = [], []
    for p in inspect.signature(av_cls.__init__).parameters.values():
        if p.name in FRAMEWORK_ARGS or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = None if p.default is p.empty else p.default
        kind = _scalar_kind(p.annotation, default)
        if kind is None:
            if p.default is p.empty:
                raise ValueError(
                    f"{PREFIX}{short}: Avalanche's {av_cls.__name__} needs {p.name!r}, which is not a number or string"
                )
            continue
        meta = {"help": _param_help(doc, p.name), "grid": None, "kind": kind}
        if p.default is p.empty:
            required.append((p.name, kind, dataclasses.field(metadata=meta)))
        else:
            optional.append(
                (
                    p.name,
                    kind | None if p.default is None else kind,
                    dataclasses.field(default=p.default, metadata=meta),
                )
            )
    net_help = "cl-bench network variant (nets.build_network): base, hat or lfl"
    optional.append(
        ("net", str, dataclasses.field(default=net, metadata={"help": net_help, "grid": None, "kind": str}))
    )
    return dataclasses.make_dataclass(f"Avalanche{short}Hparams", required + optional)


def describe(cls: type) -> str:
    """``name: type = default`` (or ``(required)``) for each hyperparameter of a strategy class."""
    return ", ".join(
        f"{f.name}: {f.metadata['kind'].__name__}"
        + (" (required)" if f.default is dataclasses.MISSING else f" = {f.default!r}")
        for f in dataclasses.fields(cls.Hparams)
    )


def parse_hparams(cls: type, values: dict[str, Any] | None) -> Any:
    """Typed Hparams with clear errors: unknown names, values of the wrong type, required ones missing.
    (The ``parse_hparams`` classmethod of every Avalanche strategy class.)"""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Hparams)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise HparamError(
            f"strategy {cls.name!r} has no hyperparameter {', '.join(unknown)}; it accepts: {describe(cls)}"
        )
    missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in values]
    if missing:
        raise HparamError(
            f"strategy {cls.name!r} needs "
            + ", ".join(f"-p {n}={fields[n].metadata['kind'].__name__.upper()}" for n in missing)
            + f" (Avalanche has no default); it accepts: {describe(cls)}"
        )
    parsed = {}
    for key, raw in values.items():
        f = fields[key]
        if f.default is None and str(raw).lower() == "none":
            parsed[key] = None
            continue
        try:
            parsed[key] = parse_value(raw, f.metadata["kind"], f"hyperparameter {key!r} of {cls.name!r}")
        except BadValue as e:
            raise HparamError(str(e)) from None
    hp = cls.Hparams(**parsed)
    if hp.net not in NETS:
        raise HparamError(f"hyperparameter 'net' of {cls.name!r} must be base, hat or lfl, got {hp.net!r}")
    return hp
