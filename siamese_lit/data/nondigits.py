"""Non-digits: images a digit model should answer `unknown`, as uint8 (N, 28, 28) MNIST-style tensors.

An evaluation set and a training set, disjoint in fonts and in generators, each image brought to
MNIST form by siamese_lit.data.images.to_mnist (the road a user's image takes).

The evaluation set (`NonDigits`), of two generators:

- `glyphs`: letters and symbols that look like no digit (NON_DIGIT_CHARACTERS: no O, I, l, S, Z, B,
  g, q, b, G, T, L, |, ...), rendered from TrueType/OpenType font files (Debian's font packages,
  `make fonts`), each at a seeded size, slant and offset;
- `shapes`: drawn triangles and squares, crosses, stars, arrows, grids, spirals and scribbles
  (seeded), none a circle or a single stroke (a 0 or a 1).

The training set (`GlyphClasses`): TRAINING_CHARACTERS in the DejaVu fonts only, each character
one class, and procedural classes beside them (stroke glyphs: 2-3 Bezier strokes; polyline glyphs:
1-2 open pen paths of straight segments turning at sharp corners), each drawn several times,
for a model to learn that digits are not the only shapes there are (`data.glyph_classes`). The
evaluation glyphs use every other font (`evaluation_fonts`), and no drawn shape of the evaluation
generators is ever trained on.

Both are built once and cached under `cache_dir` (a .pt of tensors named by a hash of the fonts,
characters and seed), so training and evaluation read tensors.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from siamese_lit.data.images import ImageError, to_mnist
from siamese_lit.utils.errors import ConfigError

#: Letters and symbols that look like no digit (none of O o D Q I i l j | ! Z z S s $ B b G g q T L ...).
NON_DIGIT_CHARACTERS = "ACEFHKMNPRUVWXYacefhkmnpruvwxy#%@?+=*<>&~∞ΩλπΣΔЖЯ★♥→✓"
#: Characters the training glyph classes are made of: Latin, Greek and Cyrillic letters and symbols
#: that look like no digit, and none of the shapes of the evaluation set (no polygon, star, cross, arrow).
TRAINING_CHARACTERS = (
    "ACEFHKMNPRUVWXYacefhkmnpruvwxy#%@?=&~ΓΘΞΠΦΨΩαβγεηθλμνξπρσφψωΔΣ"
    "БГДЖИЛПФЦШЩЫЭЮЯгджилпфцшщыэюя€£¥§¶©®‰±÷√∫≠∂∏"
)
#: The font family trained on; the evaluation glyphs come from every other font.
TRAINING_FONTS = "DejaVu"
#: The folders Debian's font packages install into (`make fonts`), searched for *.ttf and *.otf.
FONT_DIRS = ("/usr/share/fonts/truetype", "/usr/share/fonts/opentype")
#: Drawn shapes per set, by kind.
SHAPE_KINDS = ("polygon", "cross", "star", "arrow", "grid", "spiral", "scribble")
#: The canvas glyphs and shapes are drawn on before to_mnist frames them.
CANVAS = 96
#: A version of the generators: a change to them must not read an older cache.
VERSION = 2


def font_files(dirs: Sequence[str | Path] = FONT_DIRS) -> list[Path]:
    """The font files under `dirs`, sorted (an absent folder holds none)."""
    found: list[Path] = []
    for d in dirs:
        root = Path(d)
        if root.is_dir():
            found += [p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf") and p.is_file()]
    return sorted(found)


def training_fonts(fonts: Sequence[Path]) -> list[Path]:
    """The fonts the training glyph classes are drawn from (TRAINING_FONTS)."""
    return [f for f in fonts if f.name.startswith(TRAINING_FONTS)]


def evaluation_fonts(fonts: Sequence[Path]) -> list[Path]:
    """The fonts of the evaluation glyphs: every font not trained on."""
    return [f for f in fonts if not f.name.startswith(TRAINING_FONTS)]


def _cached(path: Path, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The tensors saved at `path`, else `make()`'s, saved there (whole) first."""
    if path.is_file():
        return torch.load(path, weights_only=True)
    made = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(made, tmp)
    tmp.replace(path)
    return made


def _key(*parts: object) -> str:
    return hashlib.sha256(repr((VERSION, *parts)).encode()).hexdigest()[:16]


def _in_mnist_form(image: Any) -> Tensor:
    """A drawn CANVAS x CANVAS greyscale PIL image as a (28, 28) digit-style tensor (to_mnist)."""
    return to_mnist(torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(CANVAS, CANVAS))


def _glyph(font_path: Path, char: str, rng: random.Random) -> Tensor | None:
    """One character of one font as a (28, 28) digit-style image; None when the font lacks it."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(str(font_path), size=rng.randint(48, 64))
    except OSError:
        return None
    box = font.getbbox(char)
    if box is None or box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    if _is_notdef(font, char):
        return None
    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    x = (CANVAS - (box[2] - box[0])) / 2 - box[0] + rng.uniform(-4, 4)
    y = (CANVAS - (box[3] - box[1])) / 2 - box[1] + rng.uniform(-4, 4)
    draw.text((x, y), char, fill=0, font=font)
    image = image.rotate(rng.uniform(-12, 12), fillcolor=255)
    try:
        return _in_mnist_form(image)
    except ImageError:  # nothing drawn
        return None


def _is_notdef(font: object, char: str) -> bool:
    """Whether `font` draws `char` as its missing-glyph box (the same mask as an unassigned code point)."""
    missing = "\U000f0000"  # a private-use code point no font here defines
    try:
        a, b = font.getmask(char), font.getmask(missing)  # type: ignore[attr-defined]
        return a.size == b.size and bytes(a) == bytes(b)
    except Exception:
        return True


def _shape(kind: str, rng: random.Random) -> Tensor:
    """One drawn shape of `kind` as a (28, 28) digit-style image."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = rng.randint(4, 9)
    c, r = CANVAS / 2 + rng.uniform(-6, 6), rng.uniform(26, 40)
    turn = rng.uniform(0, 2 * math.pi)

    def point(angle: float, radius: float) -> tuple[float, float]:
        return (c + radius * math.cos(angle + turn), c + radius * math.sin(angle + turn))

    if kind == "polygon":  # a triangle or a square, outlined (a 5- or 6-gon at 28 px reads as a 0)
        n = rng.randint(3, 4)
        pts = [point(2 * math.pi * i / n, r) for i in range(n)]
        draw.line([*pts, pts[0]], fill=255, width=width, joint="curve")
    elif kind == "cross":
        for a in (0.0, math.pi / 2):
            draw.line([point(a, r), point(a + math.pi, r)], fill=255, width=width)
    elif kind == "star":
        n = rng.randint(5, 7)
        pts = [point(math.pi * i / n, r if i % 2 == 0 else r * 0.45) for i in range(2 * n)]
        draw.line([*pts, pts[0]], fill=255, width=width, joint="curve")
    elif kind == "arrow":
        tip, tail = point(0, r), point(math.pi, r)
        draw.line([tail, tip], fill=255, width=width)
        for side in (1, -1):  # the head: two strokes back from the tip at 30 degrees
            back = turn + math.pi + side * math.pi / 6
            draw.line(
                [tip, (tip[0] + 0.5 * r * math.cos(back), tip[1] + 0.5 * r * math.sin(back))],
                fill=255,
                width=width,
            )
    elif kind == "grid":  # a hash or a 3x3 grid
        n = rng.randint(2, 3)
        for i in range(n):
            off = -r + 2 * r * (i + 1) / (n + 1)
            draw.line([(c - r, c + off), (c + r, c + off)], fill=255, width=width)
            draw.line([(c + off, c - r), (c + off, c + r)], fill=255, width=width)
    elif kind == "spiral":
        turns = rng.uniform(1.5, 3.0)
        pts = [point(t * 2 * math.pi * turns / 60, r * t / 60) for t in range(1, 61)]
        draw.line(pts, fill=255, width=width, joint="curve")
    else:  # scribble: a random walk of 6-12 points
        pts = [
            (rng.uniform(16, CANVAS - 16), rng.uniform(16, CANVAS - 16)) for _ in range(rng.randint(6, 12))
        ]
        draw.line(pts, fill=255, width=width, joint="curve")
    return _in_mnist_form(image)


def _stroke_controls(rng: random.Random) -> list[list[tuple[float, float]]]:
    """The control points of a stroke glyph: 2 or 3 cubic Bezier strokes across the canvas."""
    return [
        [(rng.uniform(16, CANVAS - 16), rng.uniform(16, CANVAS - 16)) for _ in range(4)]
        for _ in range(rng.randint(2, 3))
    ]


def stroke_glyph(controls: list[list[tuple[float, float]]], rng: random.Random) -> Tensor:
    """One drawing of a stroke glyph: its Bezier strokes, each control point moved a little and a
    pen width drawn, as a (28, 28) digit-style image."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = rng.randint(5, 9)
    for stroke in controls:
        p = [(x + rng.gauss(0, 3), y + rng.gauss(0, 3)) for x, y in stroke]
        curve = [
            tuple(
                (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d
                for a, b, c, d in zip(*p, strict=True)
            )
            for t in (i / 24 for i in range(25))
        ]
        draw.line(curve, fill=255, width=width, joint="curve")
    return _in_mnist_form(image)


def _polyline_controls(rng: random.Random) -> list[list[tuple[float, float]]]:
    """The vertices of a polyline glyph: an open path of 2-4 straight segments across the canvas, and
    half the time a branch of 1-2 segments from one of its vertices; each segment at least a fifth of
    the canvas long and each corner a turn of 35-145 degrees (no path folding back on itself or
    running on straight, which would draw a plain line)."""

    def path(start: tuple[float, float], wanted: int) -> list[tuple[float, float]]:
        vertices = [start]
        while len(vertices) < wanted:
            x, y = anywhere()
            (px, py) = vertices[-1]
            if math.hypot(x - px, y - py) < CANVAS / 5:
                continue
            if len(vertices) > 1:
                (qx, qy) = vertices[-2]
                turn = abs(
                    math.remainder(math.atan2(y - py, x - px) - math.atan2(py - qy, px - qx), 2 * math.pi)
                )
                if not math.radians(35) <= turn <= math.radians(145):
                    continue
            vertices.append((x, y))
        return vertices

    def anywhere() -> tuple[float, float]:
        return (rng.uniform(16, CANVAS - 16), rng.uniform(16, CANVAS - 16))

    paths = [path(anywhere(), rng.randint(3, 5))]
    if rng.random() < 0.5:
        paths.append(path(rng.choice(paths[0]), rng.randint(2, 3)))
    return paths


def polyline_glyph(paths: list[list[tuple[float, float]]], rng: random.Random) -> Tensor:
    """One drawing of a polyline glyph: its open paths of straight segments, each vertex moved a
    little (a branch stays on the vertex it leaves from) and a pen width drawn, as a (28, 28)
    digit-style image."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = rng.randint(5, 9)
    moved: dict[tuple[float, float], tuple[float, float]] = {}
    for path in paths:
        for x, y in path:
            moved.setdefault((x, y), (x + rng.gauss(0, 3), y + rng.gauss(0, 3)))
        draw.line([moved[v] for v in path], fill=255, width=width, joint="curve")
    return _in_mnist_form(image)


@dataclass(frozen=True)
class NonDigits:
    """A non-digit set: `images` uint8 (N, 28, 28) and what each is (`kinds`: "glyph" or a shape
    kind; `sources`: the font file and character, or the shape and its number)."""

    images: Tensor
    kinds: list[str]
    sources: list[str]

    @classmethod
    def generate(cls, fonts: Sequence[Path], shapes: int = 1000, seed: int = 0) -> NonDigits:
        """Every character of NON_DIGIT_CHARACTERS in every font (those it draws), and `shapes` drawn
        shapes spread over SHAPE_KINDS, all seeded by `seed`."""
        rng = random.Random(seed)
        images, kinds, sources = [], [], []
        for path in fonts:
            for char in NON_DIGIT_CHARACTERS:
                glyph = _glyph(path, char, rng)
                if glyph is not None:
                    images.append(glyph)
                    kinds.append("glyph")
                    sources.append(f"{path.name}:U+{ord(char):04X}")
        for i in range(shapes):
            kind = SHAPE_KINDS[i % len(SHAPE_KINDS)]
            images.append(_shape(kind, rng))
            kinds.append(kind)
            sources.append(f"{kind}:{i}")
        stacked = torch.stack(images) if images else torch.empty(0, 28, 28, dtype=torch.uint8)
        return cls(stacked, kinds, sources)

    @classmethod
    def load(
        cls, cache_dir: str | Path, fonts: Sequence[Path], shapes: int = 1000, seed: int = 0
    ) -> NonDigits:
        """The set of `fonts` (evaluation_fonts of the machine's, for evaluate), read from `cache_dir`
        when built before, else generated and cached there. No fonts: the drawn shapes only."""
        key = _key(NON_DIGIT_CHARACTERS, [(p.name, p.stat().st_size) for p in fonts], shapes, seed)

        def make() -> dict[str, Any]:
            made = cls.generate(fonts, shapes, seed)
            return {"images": made.images, "kinds": made.kinds, "sources": made.sources}

        saved = _cached(Path(cache_dir) / f"nondigits_{key}.pt", make)
        return cls(saved["images"], list(saved["kinds"]), list(saved["sources"]))


@dataclass(frozen=True)
class GlyphClasses:
    """Training glyphs: `images` uint8 (N, 28, 28) and `labels` (N,): the position of each image's
    character in TRAINING_CHARACTERS (one class per character, whatever the font), then
    len(TRAINING_CHARACTERS) + i for the i-th stroke glyph, then the polyline glyphs after the strokes."""

    images: Tensor
    labels: Tensor

    @classmethod
    def load(
        cls, cache_dir: str | Path, strokes: int = 0, polylines: int = 0, renderings: int = 4, seed: int = 0
    ) -> GlyphClasses:
        """TRAINING_CHARACTERS in every training font of the machine, `strokes` procedural stroke
        glyphs (`stroke_glyph`) and `polylines` polyline glyphs (`polyline_glyph`), `renderings`
        seeded draws of each, cached under `cache_dir`. ConfigError when the machine has no training
        font."""
        fonts = training_fonts(font_files())
        if not fonts:
            raise ConfigError(
                f"data.glyph_classes needs the {TRAINING_FONTS} fonts (under {', '.join(FONT_DIRS)}): "
                "install them with `make fonts` (as root)."
            )
        key = _key(
            TRAINING_CHARACTERS, [(p.name, p.stat().st_size) for p in fonts], strokes, renderings, seed
        )
        if polylines:  # a cache of stroke glyphs alone keeps its name
            key = _key(key, polylines)

        def make() -> dict[str, Any]:
            rng = random.Random(seed)
            images, labels = [], []
            for path in fonts:
                for label, char in enumerate(TRAINING_CHARACTERS):
                    for _ in range(renderings):
                        glyph = _glyph(path, char, rng)
                        if glyph is not None:
                            images.append(glyph)
                            labels.append(label)
            for i in range(strokes):
                controls = _stroke_controls(rng)
                for _ in range(renderings):
                    images.append(stroke_glyph(controls, rng))
                    labels.append(len(TRAINING_CHARACTERS) + i)
            for i in range(polylines):
                paths = _polyline_controls(rng)
                for _ in range(renderings):
                    images.append(polyline_glyph(paths, rng))
                    labels.append(len(TRAINING_CHARACTERS) + strokes + i)
            return {"images": torch.stack(images), "labels": torch.tensor(labels)}

        saved = _cached(Path(cache_dir) / f"glyph_classes_{key}.pt", make)
        return cls(saved["images"], saved["labels"])
