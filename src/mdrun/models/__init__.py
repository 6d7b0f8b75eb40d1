"""Architectures behind one interface (unimodal embeddings, fused representation, matching score, task loss)."""

from mdrun.models.base import MultimodalModel, PairBatch, SplitInputs
from mdrun.models.registry import MODELS
from mdrun.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["MODELS", "MultimodalModel", "PairBatch", "SplitInputs"]
