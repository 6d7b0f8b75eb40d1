"""The registry of architectures, keyed by the `arch` name of a model config."""

from mdrun.registry import Registry

MODELS: Registry = Registry("model architecture")
