"""Name-keyed registries: a config names a method, metric, model or loader, and the registry finds it."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from mdrun.errors import MdrunError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from config names to classes or functions of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            valid = ", ".join(self.names()) or "(none registered)"
            raise MdrunError(f"unknown {self.kind} '{name}'; valid names: {valid}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def import_submodules(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package, so that each file's `register` decorators run.

    This is what lets a new method or metric be one new file, with no central list to edit.
    """
    for module in pkgutil.iter_modules(package_path):
        importlib.import_module(f"{package_name}.{module.name}")
