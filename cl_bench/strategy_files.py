"""A user strategy file (``path/file.py:Class``) read without running it, for the reading commands.

``cl-bench status`` and ``cl-bench sweep --dry-run`` must not execute user code, yet a sweep's run ids
hash every hyperparameter with its default, which the file's ``Hparams`` declare. ``static_strategy``
builds a stand-in class from the file's syntax tree (``ast``; nothing in the file runs): the same name
and an ``Hparams`` dataclass with the same fields, defaults and declarations (``hparam(...)``), so it
expands grids and checks values exactly as the real class. It reads:

- the hyperparameters: ``class C(Strategy[XHparams])`` with ``XHparams`` a dataclass of the file, or
  ``class Hparams`` nested in the class (decorated ``@dataclass``), whose fields are ``name: type =
  literal``, ``= hparam(literal, ...)`` or ``= field(default=literal)``; a base ``X.Hparams``;
- the strategy's ``name = "..."``, in the class or a base of the same file (else the class's name);
- a class with no ``Hparams`` of its own takes its bases' (classes of the same file, or classes the file
  imports from ``cl_bench``, which are the installed package's code and may be imported).

Anything else (a default computed by code, a base from elsewhere) raises ``StaticReadError`` naming the
file and line: the reading command then refuses rather than run the file. ``cl-bench sweep`` itself
imports the file (``registry.load_from_file``), as it must to run it.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
from pathlib import Path
from typing import Any

from cl_bench.registry import strategy_file
from cl_bench.strategy import NoHparams, Strategy, hparam


class StaticReadError(ValueError):
    """The file's hyperparameters cannot be known without running its code."""


def static_strategy(spec: str) -> type[Strategy]:
    """A stand-in for the class ``spec`` (``path/file.py:Class``) with its name and Hparams."""
    reader, node = _class_of(spec)
    name = reader.name_of(node) or node.name
    return type(node.name, (Strategy,), {"name": name, "Hparams": reader.hparams_of(node), "__module__": __name__})


_NAMES: dict[tuple[str, str, str], str] = {}  # (resolved path, sha256 of its bytes, class) -> its name


def static_name(spec: str) -> str:
    """The ``name`` a strategy file's class declares, read without running the file (or the class name)."""
    file, cls_name = strategy_file(spec)
    key = (str(file.resolve()), hashlib.sha256(file.read_bytes()).hexdigest(), cls_name)
    if key not in _NAMES:
        reader, node = _class_of(spec)
        _NAMES[key] = reader.name_of(node) or cls_name
    return _NAMES[key]


def class_label(spec: str) -> str:
    """``file.py:Class`` of ``path/to/file.py:Class``: the class, named without a folder of this machine
    (the same file anywhere is the same class)."""
    path, _, cls_name = spec.rpartition(":")
    return f"{Path(path).name}:{cls_name}"


def _class_of(spec: str) -> tuple[_Reader, ast.ClassDef]:
    """The file's syntax tree, read, and the class ``spec`` names in it."""
    file, cls_name = strategy_file(spec)
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError as e:
        raise StaticReadError(f"{file}, line {e.lineno}: SyntaxError: {e.msg}") from None
    reader = _Reader(file, tree)
    node = reader.classes.get(cls_name)
    if node is None:
        raise ValueError(f"{file} has no Strategy subclass named {cls_name!r}")
    return reader, node


class _Reader:
    def __init__(self, file: Path, tree: ast.Module):
        self.file = file
        self.classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        self.imported: dict[str, tuple[str, str]] = {}  # local name -> (cl_bench module, attribute)
        for n in tree.body:
            if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "cl_bench" and not n.level:
                for alias in n.names:
                    self.imported[alias.asname or alias.name] = (n.module, alias.name)

    def fail(self, node: ast.AST, why: str) -> StaticReadError:
        return StaticReadError(
            f"{self.file}, line {getattr(node, 'lineno', '?')}: {why}; its hyperparameters "
            f"cannot be read without running its code, which reading commands (status, "
            f"sweep --dry-run) never do: write the defaults as plain values, or use "
            f"`cl-bench sweep` (which runs it)"
        )

    def name_of(self, node: ast.ClassDef) -> str | None:
        """``name = "..."`` of the class, else of its bases in this file (first found)."""
        for item in node.body:
            if (
                isinstance(item, (ast.Assign, ast.AnnAssign))
                and _targets(item) == ["name"]
                and isinstance(item.value, ast.Constant)
                and isinstance(item.value.value, str)
            ):
                return item.value.value
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in self.classes:
                found = self.name_of(self.classes[base.id])
                if found:
                    return found
        return None

    def resolve(self, expr: ast.expr) -> Any:
        """A base class: an ast.ClassDef of this file, or a class the file imports from cl_bench."""
        if isinstance(expr, ast.Name) and expr.id in self.classes:
            return self.classes[expr.id]
        if isinstance(expr, ast.Name) and expr.id in self.imported:
            module, attr = self.imported[expr.id]
            return getattr(importlib.import_module(module), attr)
        raise self.fail(expr, f"base {ast.unparse(expr)} is neither a class of this file nor one from cl_bench")

    def hparams_of(self, node: ast.ClassDef) -> type:
        for item in node.body:
            if isinstance(item, ast.ClassDef) and item.name == "Hparams":
                return self.dataclass(item)
            if isinstance(item, (ast.Assign, ast.AnnAssign)) and _targets(item) == ["Hparams"]:
                return self.hparams_ref(item.value)
        for base in node.bases:
            if isinstance(base, ast.Subscript) and isinstance(base.slice, ast.Name):  # Strategy[XHparams]
                declared = base.slice.id
                if declared in self.classes:
                    return self.dataclass(self.classes[declared])
                if declared in self.imported:
                    module, attr = self.imported[declared]
                    return getattr(importlib.import_module(module), attr)
                raise self.fail(base, f"{declared} is neither a dataclass of this file nor one from cl_bench")
            found = self.resolve(base)
            hp = self.hparams_of(found) if isinstance(found, ast.ClassDef) else getattr(found, "Hparams", None)
            if hp is not None and hp is not NoHparams:
                return hp
        return NoHparams

    def hparams_ref(self, expr: ast.expr | None) -> type:
        if isinstance(expr, ast.Name) and expr.id in self.classes:  # Hparams = a dataclass of this file
            return self.dataclass(self.classes[expr.id])
        if isinstance(expr, ast.Name) and expr.id in self.imported:
            module, attr = self.imported[expr.id]
            return getattr(importlib.import_module(module), attr)
        if isinstance(expr, ast.Attribute) and expr.attr == "Hparams":
            owner = self.resolve(expr.value)
            return self.hparams_of(owner) if isinstance(owner, ast.ClassDef) else owner.Hparams
        raise self.fail(expr or ast.Module(), "Hparams is not a class nor X.Hparams")

    def dataclass(self, node: ast.ClassDef) -> type:
        bases = tuple(
            self.dataclass(self.classes[b.id])
            if isinstance(b, ast.Name) and b.id in self.classes
            else self.hparams_ref(b)
            for b in node.bases
        )
        fields = []
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                if item.value is None:
                    raise self.fail(item, f"hyperparameter {item.target.id!r} has no default")
                fields.append((item.target.id, Any, self.field(item.value)))
            elif not isinstance(item, (ast.Expr, ast.Pass)):  # a docstring, `pass`
                raise self.fail(item, "Hparams holds more than fields with defaults")
        return dataclasses.make_dataclass("Hparams", fields, bases=bases)

    def field(self, value: ast.expr) -> Any:
        if isinstance(value, ast.Call) and _call_name(value) in ("hparam", "field"):
            try:
                args = [ast.literal_eval(a) for a in value.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in value.keywords}
            except (ValueError, TypeError, SyntaxError):
                raise self.fail(value, "a hyperparameter's declaration is not plain values") from None
            if _call_name(value) == "field":
                if set(kwargs) - {"default", "metadata"} or args:
                    raise self.fail(value, "field(...) other than field(default=...)")
                return dataclasses.field(**kwargs)
            return hparam(*args, **kwargs)
        try:
            return dataclasses.field(default=ast.literal_eval(value))
        except (ValueError, TypeError, SyntaxError):
            raise self.fail(value, "a hyperparameter's default is not a plain value") from None


def _targets(item: ast.Assign | ast.AnnAssign) -> list[str]:
    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def _call_name(call: ast.Call) -> str:
    fn = call.func
    return fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
