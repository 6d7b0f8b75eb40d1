"""The embedded default data: generated scenes of shapes with five captions each, in the Flickr30K LAVIS layout.

No package ships captioned photographs, so mdrun draws its own: each scene contains two to four shapes
with a colour, a size and a place on a 3 x 3 grid, over a coloured background. Five captions per
scene describe it in different styles (a listing, positions, a relation, a count, a short form), so
most captions are unique to their image. The files are written once per seed, in the same layout as
Flickr30K from LAVIS, and read back through the real loader.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from mdrun.data.registry import DATASET_LOADERS
from mdrun.data.retrieval_layouts import load_lavis_retrieval
from mdrun.data.types import RetrievalDataset
from mdrun.errors import MdrunError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1

COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (240, 220, 40),
    "purple": (140, 50, 180), "orange": (250, 140, 20), "white": (245, 245, 245), "black": (20, 20, 20),
    "cyan": (40, 210, 220), "pink": (250, 150, 190), "brown": (130, 80, 40), "gray": (128, 128, 128),
}
BACKGROUNDS = ["white", "black", "gray", "blue", "green", "yellow"]
SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross", "ring", "hexagon"]
SHAPE_WORDS = {
    "circle": ["circle", "disk", "round dot"], "square": ["square", "box", "block"],
    "triangle": ["triangle"], "star": ["star"], "diamond": ["diamond", "rhombus"],
    "cross": ["cross", "plus sign"], "ring": ["ring", "hoop"], "hexagon": ["hexagon"],
}
PLACES = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
SIZES = ["small", "large"]
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
BACKGROUND_WORDS = ["background", "backdrop", "canvas"]


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str
    cell: int


@dataclass
class Scene:
    background: str
    objects: list[SceneObject]  # in reading order of their grid cells


def sample_scene(rng: np.random.Generator) -> Scene:
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    count = int(rng.integers(2, 5))
    cells = sorted(rng.choice(9, size=count, replace=False).tolist())
    colors = [name for name in COLORS if name != background]
    objects = [
        SceneObject(
            shape=SHAPES[rng.integers(len(SHAPES))],
            color=colors[rng.integers(len(colors))],
            size=SIZES[rng.integers(2)],
            cell=cell,
        )
        for cell in cells
    ]
    return Scene(background=background, objects=objects)


def polygon(cx: float, cy: float, radius: float, corners: int, rotation: float, inner: float | None = None):
    points = []
    steps = corners * 2 if inner else corners
    for step in range(steps):
        angle = rotation + 2 * np.pi * step / steps
        length = radius if inner is None or step % 2 == 0 else radius * inner
        points.append((cx + length * np.cos(angle), cy + length * np.sin(angle)))
    return points


def draw_scene(scene: Scene, size: int, rng: np.random.Generator) -> Image.Image:
    # Drawn at twice the size and downsampled, for smooth edges.
    scale = 2
    canvas = size * scale
    jitter = lambda rgb: tuple(int(np.clip(v + rng.integers(-18, 19), 0, 255)) for v in rgb)
    image = Image.new("RGB", (canvas, canvas), jitter(COLORS[scene.background]))
    draw = ImageDraw.Draw(image)
    cell_size = canvas / 3

    for obj in scene.objects:
        row, col = divmod(obj.cell, 3)
        radius = cell_size * (0.22 if obj.size == "small" else 0.42)
        cx = (col + 0.5) * cell_size + rng.uniform(-0.06, 0.06) * cell_size
        cy = (row + 0.5) * cell_size + rng.uniform(-0.06, 0.06) * cell_size
        fill = jitter(COLORS[obj.color])
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if obj.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif obj.shape == "ring":
            draw.ellipse(box, outline=fill, width=max(2, int(radius * 0.35)))
        elif obj.shape == "square":
            draw.rectangle(box, fill=fill)
        elif obj.shape == "triangle":
            draw.polygon(polygon(cx, cy, radius, 3, -np.pi / 2), fill=fill)
        elif obj.shape == "diamond":
            draw.polygon(polygon(cx, cy, radius, 4, 0.0), fill=fill)
        elif obj.shape == "hexagon":
            draw.polygon(polygon(cx, cy, radius, 6, 0.0), fill=fill)
        elif obj.shape == "star":
            draw.polygon(polygon(cx, cy, radius, 5, -np.pi / 2, inner=0.45), fill=fill)
        elif obj.shape == "cross":
            arm = radius * 0.35
            draw.rectangle((cx - radius, cy - arm, cx + radius, cy + arm), fill=fill)
            draw.rectangle((cx - arm, cy - radius, cx + arm, cy + radius), fill=fill)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def describe(obj: SceneObject, rng: np.random.Generator, with_size: bool = True) -> str:
    word = SHAPE_WORDS[obj.shape][rng.integers(len(SHAPE_WORDS[obj.shape]))]
    phrase = f"{obj.size} {obj.color} {word}" if with_size else f"{obj.color} {word}"
    article = "an" if phrase[0] in "aeiou" else "a"
    return f"{article} {phrase}"


def join_phrases(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def relation(first: SceneObject, second: SceneObject) -> str:
    (row_a, col_a), (row_b, col_b) = divmod(first.cell, 3), divmod(second.cell, 3)
    if row_a == row_b:
        return "to the left of" if col_a < col_b else "to the right of"
    return "above" if row_a < row_b else "below"


def write_captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five captions in five styles; the word choices and the order of objects vary per caption."""
    objects = scene.objects
    backdrop = BACKGROUND_WORDS[rng.integers(len(BACKGROUND_WORDS))]
    shuffled = [objects[i] for i in rng.permutation(len(objects))]

    listing = f"{join_phrases([describe(o, rng) for o in shuffled])} on a {scene.background} {backdrop}"
    places = join_phrases([f"{describe(o, rng, with_size=False)} at the {PLACES[o.cell]}" for o in objects])
    first, second = (objects[i] for i in rng.choice(len(objects), size=2, replace=False))
    related = f"{describe(first, rng)} {relation(first, second)} {describe(second, rng)}"
    highlighted = objects[rng.integers(len(objects))]
    counted = (
        f"{COUNT_WORDS[len(objects)]} shapes on a {scene.background} {backdrop}, "
        f"one of them {describe(highlighted, rng)} at the {PLACES[highlighted.cell]}"
    )
    short = ", ".join(f"{o.color} {o.shape}" for o in shuffled)
    return [listing, places, related, counted, short]


def scene_labels(scene: Scene) -> dict[str, int]:
    """Per-image class labels, for linear probes of the unimodal embeddings."""
    return {
        "background": BACKGROUNDS.index(scene.background),
        "object_count": len(scene.objects),
        "first_shape": SHAPES.index(scene.objects[0].shape),
        "first_color": list(COLORS).index(scene.objects[0].color),
    }


def generate_scenes(root: Path, seed: int, split_sizes: dict[str, int], image_size: int) -> None:
    """Write the scenes under `root` in the Flickr30K LAVIS layout, atomically (a half-written copy is never used)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    (staging / "annotations").mkdir()
    (staging / "images" / "scenes-images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels: dict[str, dict[str, int]] = {}

    total = sum(split_sizes.values())
    progress = tqdm(total=total, desc="generate scenes", unit="image", leave=False)
    index = 0
    for split_name, count in split_sizes.items():
        records = []
        for _ in range(count):
            scene = sample_scene(rng)
            image_id = f"scenes-images/{index:06d}.jpg"
            draw_scene(scene, image_size, rng).save(staging / "images" / image_id, quality=92)
            captions = write_captions(scene, rng)
            labels[image_id] = scene_labels(scene)
            if split_name == "train":
                records += [{"image": image_id, "caption": c, "image_id": f"{index:06d}"} for c in captions]
            else:
                records.append({"image": image_id, "caption": captions})
            index += 1
            progress.update()
        (staging / "annotations" / f"{split_name}.json").write_text(json.dumps(records, indent=0))
    progress.close()

    (staging / "annotations" / "scene_labels.json").write_text(json.dumps(labels))
    manifest = {"generator_version": GENERATOR_VERSION, "seed": seed, "splits": split_sizes, "image_size": image_size}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))

    if root.exists():
        shutil.rmtree(root)
    try:
        os.replace(staging, root)
    except OSError:
        # Another process finished the same generation first; its copy is identical.
        shutil.rmtree(staging, ignore_errors=True)


def manifest_matches(root: Path, seed: int, split_sizes: dict[str, int], image_size: int) -> bool:
    path = root / "manifest.json"
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    expected = {"generator_version": GENERATOR_VERSION, "seed": seed, "splits": split_sizes, "image_size": image_size}
    return manifest == expected


@DATASET_LOADERS.register("scenes")
def load_scenes(
    name: str,
    root: str | Path,
    seed: int = 0,
    train_images: int = 1200,
    val_images: int = 100,
    test_images: int = 200,
    image_size: int = 96,
    source: str = "",
) -> RetrievalDataset:
    """Generate the embedded scenes once (per seed and size) and load them through the LAVIS loader."""
    root = Path(root)
    split_sizes = {"train": train_images, "val": val_images, "test": test_images}
    if min(split_sizes.values()) < 2:
        raise MdrunError(f"data split sizes must be at least 2 images each, got {split_sizes}")
    if not manifest_matches(root, seed, split_sizes, image_size):
        log.info("generating %d scenes (seed %d) under %s", sum(split_sizes.values()), seed, root)
        generate_scenes(root, seed, split_sizes, image_size)

    dataset = load_lavis_retrieval(name=name, root=root, source=source)
    labels = json.loads((root / "annotations" / "scene_labels.json").read_text())
    for split in dataset.splits.values():
        for key in next(iter(labels.values())):
            split.image_labels[key] = np.array([labels[i][key] for i in split.image_ids], dtype=np.int64)
    return dataset
