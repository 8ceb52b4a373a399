"""The user's side of an import: build their module from an import path, load their weights.

``build_module("mypkg.models:build", {"hidden": 64})`` imports ``mypkg.models`` and calls
``build(hidden=64)`` (a class is called the same way; a module-level ``nn.Module`` instance is
taken as it is). This runs the user's code: that is the point of the import path, and it is only
ever taken from an explicit flag (``python -m export --torch-module``). The package is found as
``python -m`` finds it: the current directory first on ``sys.path``, then ``PYTHONPATH`` and the
installed packages.

``load_weights`` reads a ``torch.save(model.state_dict(), path)`` file with
``weights_only=True`` (no pickled code runs) and loads it only when its keys and shapes are
exactly the module's.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.from_torch.errors import TorchImportError, one_line

MAX_KEYS_LISTED = 5


def build_module(import_path: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """The ``nn.Module`` that ``import_path`` (``package.module:name``, ``name`` possibly dotted)
    names or builds with ``kwargs``.

    Raises:
        TorchImportError: a malformed path, a module that does not import, a missing name, a
            call that raises, or something that is not an ``nn.Module``.
    """
    module_name, sep, attribute = import_path.partition(":")
    if not sep or not module_name or not attribute:
        raise TorchImportError(
            f"--torch-module {import_path!r}: expected MODULE:NAME, e.g. mypkg.models:build"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:  # as `python -m` does, so a package beside the user is found
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise TorchImportError(
            f"cannot import {module_name} ({error}); it is looked up from the current "
            f"directory ({cwd}), PYTHONPATH and the installed packages"
        ) from error
    except Exception as error:  # the user's module itself failed: say how, on one line
        raise TorchImportError(f"importing {module_name} raised {one_line(error)}") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise TorchImportError(f"{import_path}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if isinstance(target, nn.Module):
        if kwargs:
            raise TorchImportError(
                f"{import_path} is a module instance; --torch-kwargs needs a class or a factory"
            )
        return target
    if not callable(target):
        raise TorchImportError(
            f"{import_path} is {type(target).__name__}, not a torch.nn.Module class or factory"
        )
    call = f"{import_path}(**{dict(kwargs or {})})"
    try:
        built = target(**(kwargs or {}))
    except Exception as error:
        raise TorchImportError(f"{call} raised {one_line(error)}") from error
    if not isinstance(built, nn.Module):
        raise TorchImportError(f"{call} returned {type(built).__name__}, not a torch.nn.Module")
    return built


def load_weights(module: nn.Module, path: Path) -> None:
    """Load the state_dict saved at ``path`` into ``module`` (on the CPU), strictly.

    Raises:
        TorchImportError: an unreadable file, one that is not a state_dict, missing or
            unexpected keys, or a tensor of another shape than the module's.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # missing file, not a torch file, or pickled code refused
        raise TorchImportError(f"cannot read the state_dict {path}: {one_line(error)}") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise TorchImportError(
            f"{path} does not hold a state_dict (a dict of tensors, as written by "
            "torch.save(model.state_dict(), path))"
        )
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        problems = [
            f"{label} keys {_listed(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise TorchImportError(
            f"the state_dict {path} does not fit the module: {'; '.join(problems)}"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise TorchImportError(
                f"the state_dict {path} does not fit the module: {key} is "
                f"{tuple(state[key].shape)} there, {tuple(tensor.shape)} in the module"
            )
    module.load_state_dict(state)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    more = len(keys) - MAX_KEYS_LISTED
    return f"[{shown}{f', and {more} more' if more > 0 else ''}]"
