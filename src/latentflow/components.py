"""``_target_`` config nodes -> objects and factories, without Hydra (the core stays Hydra-free).

A node is a plain mapping as Hydra writes it: ``{"_target_": "pkg.mod.Class", "_partial_":
true, **arguments}``; arguments may be nodes themselves (resolved first, depth first). The same
dicts are what a checkpoint stores, so a model is rebuilt from its checkpoint with no YAML, and a
user's class in their own module (``_target_: my_pkg.MyTransform``) works like ours.

Every error is a ``ComponentError`` (a ``ValueError``) whose message starts with the node's config
key: an import that fails, an argument the class does not take, a required one missing, an
exception raised by the constructor, a built object that does not meet its protocol
(``latentflow.protocols.ROLES``).

>>> make = instantiate({"_target_": "latentflow.flows.NLSq", "_partial_": True}, "transform")
>>> type(make()).__name__
'NLSq'
>>> try:
...     instantiate({"_target_": "latentflow.flows.NoSuchThing"}, "transform")
... except ComponentError as err:
...     print(str(err)[:62])
transform._target_: cannot import latentflow.flows.NoSuchThing
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from latentflow.protocols import ROLES, missing_members

RESERVED = ("_target_", "_partial_")
# What a checkpoint may name without the user's word: latentflow's own parts and torch's optimizers
# and LR schedulers (the defaults). Anything else needs trust (``check_trusted``).
TRUSTED_BY_DEFAULT = ("latentflow", "torch.optim")
WIRED = frozenset(ROLES) - {"data"}  # keys whose nodes the framework calls with wiring


class ComponentError(ValueError):
    """A component node that cannot be built; the message names its config key."""


def locate(path: Any, key: str) -> Any:
    """The object at dotted ``path`` (``pkg.module.Name``); ComponentError naming ``key``."""
    if not isinstance(path, str) or not path or path.startswith("."):
        raise ComponentError(f"{key}._target_: expected a dotted import path, got {path!r}")
    parts = path.split(".")
    err: Exception | None = None
    for i in range(len(parts) - 1, 0, -1):  # longest importable module prefix
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and not module_name.startswith(e.name):
                # the module exists but one of its own imports failed: report that
                raise ComponentError(f"{key}._target_: cannot import {path} ({e})") from e
            err = e
            continue
        except Exception as e:  # the module raised while importing
            raise ComponentError(f"{key}._target_: cannot import {path} ({e})") from e
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError as e:
            raise ComponentError(f"{key}._target_: cannot import {path} ({e})") from e
        return obj
    raise ComponentError(f"{key}._target_: cannot import {path} ({err or 'no module given'})")


def is_node(value: Any) -> bool:
    return isinstance(value, Mapping) and "_target_" in value


def _describe(target: Any) -> str:
    module = getattr(target, "__module__", "") or ""
    return f"{module}.{getattr(target, '__qualname__', repr(target))}".lstrip(".")


def check_arguments(target: Any, arguments: Mapping[str, Any], key: str, complete: bool) -> None:
    """Arguments the callable does not take; with ``complete``, also required ones not given
    (a factory's are checked when it is called with its wiring)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = [a for a in arguments if a not in params and not takes_any]
    if unknown:
        raise ComponentError(
            f"{key}: {_describe(target)} takes no argument {', '.join(map(repr, unknown))} "
            f"(it takes {', '.join(names) or 'none'})"
        )
    if not complete:
        return
    missing = [
        n
        for n, p in params.items()
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and n not in arguments
    ]
    if missing:
        raise ComponentError(
            f"{key}: {_describe(target)} needs {', '.join(map(repr, missing))}: set "
            + ", ".join(f"{key}.{m}" for m in missing)
        )


def check_role_class(target: Any, key: str) -> None:
    """A part with a protocol (``protocols.ROLES``) must be a class with the protocol's methods:
    checked before it is called, so a target like ``os.system`` is refused unrun."""
    protocol = ROLES.get(key)
    if protocol is None:
        return
    if not inspect.isclass(target):
        raise ComponentError(
            f"{key}._target_: {_describe(target)} is not a class; {key} must name a class "
            f"meeting the {protocol.__name__} protocol (latentflow.protocols)"
        )
    methods = [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    missing = sorted(n for n in methods if not callable(getattr(target, n, None)))
    if missing:
        raise ComponentError(
            f"{key}: {_describe(target)} does not meet the {protocol.__name__} protocol "
            f"(latentflow.protocols): missing {', '.join(missing)}"
        )


class Factory:
    """A node's target with its arguments bound; calling it (with the wiring arguments) builds
    the part. Errors raised while building name the node's key; the result is checked against
    the protocol of its key (``protocols.ROLES``). Picklable when the target is importable."""

    def __init__(self, target: Any, arguments: dict[str, Any], key: str) -> None:
        self.target, self.arguments, self.key = target, arguments, key

    def __call__(self, *args: Any, **wiring: Any) -> Any:
        clash = sorted(set(wiring) & set(self.arguments))
        if clash:
            raise ComponentError(
                f"{self.key}: {', '.join(clash)} is set by the framework (from the data or the "
                "enclosing part): remove it from the config"
            )
        try:
            obj = self.target(*args, **self.arguments, **wiring)
        except ComponentError:
            raise
        except (TypeError, ValueError) as err:
            raise ComponentError(f"{self.key} ({_describe(self.target)}): {err}") from err
        protocol = ROLES.get(self.key)
        if protocol is not None:
            missing = missing_members(obj, protocol)
            if missing:
                raise ComponentError(
                    f"{self.key}: {_describe(self.target)} does not meet the "
                    f"{protocol.__name__} protocol (latentflow.protocols): missing "
                    + ", ".join(missing)
                )
        return obj

    def __repr__(self) -> str:
        return f"Factory({_describe(self.target)}, {self.arguments}, key={self.key!r})"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _targets(node: Any, key: str) -> list[tuple[str, Any]]:
    """(config key, ``_target_`` value) of every node inside ``node``, depth first."""
    if isinstance(node, list | tuple):
        return [t for i, v in enumerate(node) for t in _targets(v, f"{key}[{i}]")]
    if not isinstance(node, Mapping):
        return []
    found = [(key, node["_target_"])] if is_node(node) else []
    for k, v in node.items():
        if k not in RESERVED:
            found += _targets(v, f"{key}.{k}" if key else str(k))
    return found


def check_trusted(node: Any, key: str, trusted: tuple[str, ...] | list[str] = ()) -> None:
    """Refuse, before importing or calling anything, a ``_target_`` in ``node`` that is not
    under ``TRUSTED_BY_DEFAULT`` or a module prefix the user trusts (``trusted``, e.g.
    ``["my_pkg"]``). For nodes read from a file someone else wrote (a checkpoint): a target is
    code that runs. A trusted prefix is checked twice: by name, so nothing untrusted is
    imported, and by the module that defines the object it names, so a dotted path through an
    imported module (``latentflow.rundir.os.system``) does not pass."""
    users = tuple(str(t) for t in trusted)
    prefixes = (*TRUSTED_BY_DEFAULT, *users)
    for where, target in _targets(node, key):
        defined_in = ""
        if isinstance(target, str) and _under(target, prefixes):
            obj = locate(target, where)
            defined_in = getattr(obj, "__module__", None) or ""
            if _under(defined_in, users):
                continue  # the user's own code: whatever they trust
            # latentflow's and torch.optim's parts are classes; their functions (a file writer,
            # a downloader) are not parts a checkpoint may call
            if _under(defined_in, TRUSTED_BY_DEFAULT) and inspect.isclass(obj):
                continue
        shown = f"{target!r}" + (f" (defined in {defined_in})" if defined_in else "")
        top = str(target).split(".")[0] if isinstance(target, str) else "..."
        raise ComponentError(
            f"{where}._target_: {shown} is not latentflow's own code, and a checkpoint's targets "
            f"are called when it is opened: refused, nothing imported or called. If you trust "
            f"whoever wrote this checkpoint, say so: trust_components=[{top}]"
        )


def instantiate(node: Any, key: str, partial: bool | None = None) -> Any:
    """Resolve a config value: nodes become objects (or ``Factory``s when ``_partial_`` is true,
    or ``partial=True`` forces it), lists and mappings are resolved item by item, anything else
    is returned as it is."""
    if isinstance(node, list | tuple):
        return [instantiate(v, f"{key}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    if not is_node(node):
        return {k: instantiate(v, f"{key}.{k}") for k, v in node.items()}
    extra = [k for k in node if isinstance(k, str) and k.startswith("_") and k not in RESERVED]
    if extra:
        raise ComponentError(f"{key}: unsupported special key(s) {extra} (use {list(RESERVED)})")
    target = locate(node["_target_"], key)
    if not callable(target):
        raise ComponentError(f"{key}._target_: {node['_target_']} is not callable")
    check_role_class(target, key)
    arguments = {k: instantiate(v, f"{key}.{k}") for k, v in node.items() if k not in RESERVED}
    if partial is None:  # the parts the framework completes are factories, _partial_ or not
        partial = key in WIRED or bool(node.get("_partial_", False))
    check_arguments(target, arguments, key, complete=not partial)
    factory = Factory(target, arguments, key)
    return factory if partial else factory()
