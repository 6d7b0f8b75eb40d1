"""The registry of unlearning methods, keyed by the `name` of a method config."""

from mdrun.registry import Registry

METHODS: Registry = Registry("unlearning method")
