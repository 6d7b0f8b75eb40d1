"""An ALBEF-style image-text model at CPU size (Li et al., "Align before Fuse", NeurIPS 2021).

Frozen pre-trained encoders (EfficientNet-Lite0 image tokens, MiniLM text tokens) feed trainable
layers laid out like ALBEF: a unimodal transformer layer per modality with projection heads for
image-text contrastive (ITC) matching, a fusion encoder whose layers cross-attend from text to image
tokens, and an image-text matching (ITM) head on the fused [CLS] token. Trained with ITC plus ITM on
hard negatives. ALBEF's momentum distillation and feature queue are left out: at this size the
in-batch contrastive loss trains well without them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mdrun.data.types import RetrievalSplit
from mdrun.models.base import Inputs, MultimodalModel, PairBatch, SplitInputs
from mdrun.models.encoders import frozen_encoder_inputs
from mdrun.models.registry import MODELS


def same_sample_mask(sample_ids: Tensor) -> Tensor:
    return sample_ids[:, None] == sample_ids[None, :]


@MODELS.register("albef_small")
class AlbefSmall(MultimodalModel):
    task = "retrieval"

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        image_tokens: int,
        width: int = 128,
        heads: int = 4,
        unimodal_layers: int = 1,
        fusion_layers: int = 2,
        embed_dim: int = 64,
        temperature: float = 0.07,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()

        def encoder_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True)

        self.image_in = nn.Sequential(nn.Linear(image_dim, width), nn.LayerNorm(width))
        self.image_cls = nn.Parameter(torch.zeros(1, 1, width))
        self.image_position = nn.Parameter(torch.randn(1, image_tokens + 1, width) * 0.02)
        self.image_encoder = nn.TransformerEncoder(encoder_layer(), unimodal_layers, enable_nested_tensor=False)

        self.text_in = nn.Sequential(nn.Linear(text_dim, width), nn.LayerNorm(width))
        self.text_encoder = nn.TransformerEncoder(encoder_layer(), unimodal_layers, enable_nested_tensor=False)

        fusion_layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout, batch_first=True, norm_first=True)
        self.fusion = nn.TransformerDecoder(fusion_layer, fusion_layers)
        self.fusion_norm = nn.LayerNorm(width)

        self.image_proj = nn.Linear(width, embed_dim)
        self.text_proj = nn.Linear(width, embed_dim)
        self.itm_head = nn.Linear(width, 2)
        # Learned like ALBEF's temperature, kept in log space and clamped when used.
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())

    @classmethod
    def prepare_inputs(cls, split: RetrievalSplit, cache_dir: Path, **input_settings) -> SplitInputs:
        return frozen_encoder_inputs(split, cache_dir, **input_settings)

    @classmethod
    def build(cls, inputs: SplitInputs, **params) -> "AlbefSmall":
        image_tokens = inputs.images["tokens"]
        return cls(
            image_dim=image_tokens.shape[-1],
            text_dim=inputs.texts["tokens"].shape[-1],
            image_tokens=image_tokens.shape[1],
            **params,
        )

    def encode_image(self, a: Inputs) -> Tensor:
        tokens = self.image_in(a["tokens"])
        cls = self.image_cls.expand(len(tokens), -1, -1)
        return self.image_encoder(torch.cat([cls, tokens], dim=1) + self.image_position)

    def encode_text(self, b: Inputs) -> Tensor:
        return self.text_encoder(self.text_in(b["tokens"]), src_key_padding_mask=~b["mask"])

    def embed_a(self, a: Inputs) -> Tensor:
        return F.normalize(self.image_proj(self.encode_image(a)[:, 0]), dim=-1)

    def embed_b(self, b: Inputs) -> Tensor:
        return F.normalize(self.text_proj(self.encode_text(b)[:, 0]), dim=-1)

    def fuse_states(self, image_states: Tensor, text_states: Tensor, text_mask: Tensor) -> Tensor:
        fused = self.fusion(text_states, image_states, tgt_key_padding_mask=~text_mask)
        return self.fusion_norm(fused[:, 0])

    def fuse(self, a: Inputs, b: Inputs) -> Tensor:
        return self.fuse_states(self.encode_image(a), self.encode_text(b), b["mask"])

    def match_logits(self, fused: Tensor) -> Tensor:
        return self.itm_head(fused)

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp().clamp(0.001, 0.5)

    def similarity(self, emb_a: Tensor, emb_b: Tensor) -> Tensor:
        return emb_a @ emb_b.T / self.temperature

    def contrastive_losses(self, image_states: Tensor, text_states: Tensor, sample_ids: Tensor) -> Tensor:
        """Per-pair ITC loss; every pair of the batch that shares the image counts as a positive, as in ALBEF."""
        emb_a = F.normalize(self.image_proj(image_states[:, 0]), dim=-1)
        emb_b = F.normalize(self.text_proj(text_states[:, 0]), dim=-1)
        logits = self.similarity(emb_a, emb_b)
        positives = same_sample_mask(sample_ids).float()
        targets = positives / positives.sum(dim=1, keepdim=True)
        image_to_text = -(logits.log_softmax(dim=1) * targets).sum(dim=1)
        text_to_image = -(logits.T.log_softmax(dim=1) * targets).sum(dim=1)
        return (image_to_text + text_to_image) / 2, logits.detach()

    def hard_negatives(self, logits: Tensor, sample_ids: Tensor) -> Tensor:
        """For each row, a column drawn by softmax similarity among pairs of other images (ALBEF's hard negatives)."""
        same = same_sample_mask(sample_ids)
        # The small floor keeps a row drawable when softmax underflows to zero on every other image.
        weights = logits.float().softmax(dim=1).masked_fill(same, 0.0) + (~same).float() * 1e-8
        return torch.multinomial(weights, 1).squeeze(1)

    def task_loss(self, batch: PairBatch) -> Tensor:
        image_states = self.encode_image(batch.a)
        text_states = self.encode_text(batch.b)
        itc, logits = self.contrastive_losses(image_states, text_states, batch.sample_ids)
        if len(batch) < 2 or bool(same_sample_mask(batch.sample_ids).all()):
            return itc.mean()

        mask = batch.b["mask"]
        negative_text = self.hard_negatives(logits, batch.sample_ids)
        negative_image = self.hard_negatives(logits.T, batch.sample_ids)
        fused = torch.cat([
            self.fuse_states(image_states, text_states, mask),
            self.fuse_states(image_states, text_states[negative_text], mask[negative_text]),
            self.fuse_states(image_states[negative_image], text_states, mask),
        ])
        labels = torch.cat([torch.ones(len(batch)), torch.zeros(2 * len(batch))]).long().to(fused.device)
        itm = F.cross_entropy(self.match_logits(fused), labels)
        return itc.mean() + itm

    def pair_losses(self, batch: PairBatch) -> Tensor:
        """ITC loss of each pair within its batch plus the ITM loss of calling the pair matched."""
        image_states = self.encode_image(batch.a)
        text_states = self.encode_text(batch.b)
        itc, _ = self.contrastive_losses(image_states, text_states, batch.sample_ids)
        fused = self.fuse_states(image_states, text_states, batch.b["mask"])
        itm = F.cross_entropy(self.match_logits(fused), torch.ones(len(batch), dtype=torch.long, device=fused.device), reduction="none")
        return itc + itm
