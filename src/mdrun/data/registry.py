"""The registry of dataset loaders, keyed by the `loader` name of a data config."""

from mdrun.registry import Registry

DATASET_LOADERS: Registry = Registry("dataset loader")
