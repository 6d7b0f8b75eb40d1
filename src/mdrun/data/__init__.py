"""Datasets in their real layouts, the embedded generated data, and forget-set selection."""

from mdrun.data.registry import DATASET_LOADERS
from mdrun.registry import import_submodules

import_submodules(__name__, __path__)


def load_dataset(name: str, loader: str, **options):
    """Load the dataset that a data config describes, through the loader it names."""
    return DATASET_LOADERS.get(loader)(name=name, **options)
