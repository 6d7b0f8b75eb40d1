"""Unlearning methods, one file each, behind one interface: original model + forget and retain data -> unlearned model."""

from mdrun.methods.base import PairedLossMethod, UnlearningData, UnlearningMethod
from mdrun.methods.registry import METHODS
from mdrun.registry import import_submodules

import_submodules(__name__, __path__)


def build_method(name: str, **params) -> UnlearningMethod:
    """The method a method config names, with its hyperparameters."""
    return METHODS.get(name)(**params)


__all__ = ["METHODS", "PairedLossMethod", "UnlearningData", "UnlearningMethod", "build_method"]
