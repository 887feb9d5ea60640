"""Digits 0-9 as mouse strokes, for drawing on the demo page in a browser: one template per digit
(the shapes a person draws with a mouse: single-line strokes, no pen pressure), and a random
jitter of it (a small affine distortion and a wobble of every point) so that no two drawings agree.

Coordinates are in the unit square, (0, 0) at the top left, as bench.browser.draw takes them.
"""

from __future__ import annotations

import math

import numpy as np

Stroke = list[tuple[float, float]]


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20, start: float = -90) -> Stroke:
    angles = np.deg2rad(start + np.linspace(0, 360, n + 1))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


#: One drawing per digit: a list of strokes, each a polyline.
# fmt: off
TEMPLATES: dict[int, list[Stroke]] = {
    0: [_ellipse(0.5, 0.5, 0.27, 0.42)],
    1: [[(0.40, 0.18), (0.53, 0.07), (0.53, 0.93)]],
    2: [[(0.27, 0.25), (0.36, 0.11), (0.55, 0.06), (0.72, 0.15), (0.74, 0.33), (0.62, 0.52), (0.25, 0.92),
         (0.79, 0.92)]],
    3: [[(0.25, 0.13), (0.48, 0.06), (0.70, 0.15), (0.71, 0.32), (0.48, 0.47), (0.72, 0.60), (0.74, 0.80),
         (0.52, 0.94), (0.26, 0.87)]],
    4: [[(0.55, 0.07), (0.22, 0.63), (0.80, 0.63)], [(0.63, 0.30), (0.63, 0.93)]],
    5: [[(0.73, 0.08), (0.33, 0.08), (0.29, 0.45), (0.50, 0.40), (0.70, 0.50), (0.74, 0.72), (0.60, 0.90),
         (0.40, 0.93), (0.25, 0.85)]],
    6: [[(0.68, 0.08), (0.46, 0.20), (0.31, 0.44), (0.28, 0.70), (0.40, 0.90), (0.60, 0.92), (0.72, 0.76),
         (0.66, 0.57), (0.46, 0.52), (0.30, 0.64)]],
    7: [[(0.22, 0.10), (0.78, 0.10), (0.46, 0.93)]],
    8: [[(0.50, 0.50), (0.31, 0.35), (0.32, 0.15), (0.50, 0.07), (0.68, 0.15), (0.69, 0.35), (0.50, 0.50),
         (0.28, 0.68), (0.31, 0.88), (0.50, 0.94), (0.70, 0.88), (0.72, 0.68), (0.50, 0.50)]],
    9: [[(0.70, 0.30), (0.60, 0.10), (0.42, 0.08), (0.29, 0.24), (0.35, 0.45), (0.55, 0.48), (0.70, 0.30),
         (0.67, 0.60), (0.60, 0.93)]],
}
# fmt: on

#: Non-digits as a person draws them with a mouse: letters and shapes that look like no digit (the
#: drawn-digit benchmark's `unknown` test).
# fmt: off
NON_DIGIT_TEMPLATES: dict[str, list[Stroke]] = {
    "A": [[(0.22, 0.93), (0.50, 0.07), (0.78, 0.93)], [(0.33, 0.60), (0.67, 0.60)]],
    "H": [[(0.25, 0.08), (0.25, 0.92)], [(0.75, 0.08), (0.75, 0.92)], [(0.25, 0.50), (0.75, 0.50)]],
    "K": [[(0.28, 0.08), (0.28, 0.92)], [(0.75, 0.08), (0.28, 0.55)], [(0.42, 0.45), (0.76, 0.92)]],
    "M": [[(0.15, 0.92), (0.20, 0.08), (0.50, 0.60), (0.80, 0.08), (0.85, 0.92)]],
    "W": [[(0.10, 0.08), (0.28, 0.92), (0.50, 0.35), (0.72, 0.92), (0.90, 0.08)]],
    "#": [[(0.38, 0.08), (0.32, 0.92)], [(0.68, 0.08), (0.62, 0.92)], [(0.15, 0.35), (0.85, 0.35)],
          [(0.15, 0.65), (0.85, 0.65)]],
    "x": [[(0.18, 0.15), (0.82, 0.85)], [(0.82, 0.15), (0.18, 0.85)]],
    "triangle": [[(0.50, 0.10), (0.88, 0.88), (0.12, 0.88), (0.50, 0.10)]],
    "square": [[(0.15, 0.15), (0.85, 0.15), (0.85, 0.85), (0.15, 0.85), (0.15, 0.15)]],
    "star": [[(0.50, 0.05), (0.62, 0.40), (0.95, 0.40), (0.68, 0.60), (0.80, 0.95), (0.50, 0.73),
              (0.20, 0.95), (0.32, 0.60), (0.05, 0.40), (0.38, 0.40), (0.50, 0.05)]],
}
# fmt: on

#: A second 1, as many people write it: a plain upright bar, slanted (the test's "another drawn 1").
PLAIN_ONE: list[Stroke] = [[(0.56, 0.06), (0.46, 0.94)]]


def _densify(stroke: Stroke, step: float = 0.04) -> Stroke:
    """Points every `step` along the stroke, so a wobble bends its lines instead of moving corners."""
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
        n = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n) for t in range(1, n + 1)]
    return out


def jitter(strokes: list[Stroke], rng: np.random.Generator, strength: float = 1.0) -> list[Stroke]:
    """`strokes` under a random rotation, shear, scale and shift about the centre, then a smooth
    wobble along each stroke; `strength` scales every amount (0: the template itself)."""
    s = strength
    angle = math.radians(rng.uniform(-12, 12) * s)
    shear = rng.uniform(-0.2, 0.2) * s
    sx, sy = 1 + rng.uniform(-0.2, 0.1) * s, 1 + rng.uniform(-0.15, 0.1) * s
    dx, dy = rng.uniform(-0.05, 0.05, size=2) * s
    c, si = math.cos(angle), math.sin(angle)
    out = []
    for stroke in strokes:
        points = np.array(_densify(stroke)) - 0.5
        noise = rng.normal(0, 0.012 * s, size=points.shape).cumsum(axis=0)  # a random walk: a wobbly hand
        noise -= np.linspace(noise[0], noise[-1], len(points))  # pinned at both ends
        x, y = points[:, 0] + shear * points[:, 1], points[:, 1]
        x, y = sx * (c * x - si * y), sy * (si * x + c * y)
        xy = np.stack([x + dx, y + dy], axis=1) + noise + 0.5
        out.append([(float(a), float(b)) for a, b in np.clip(xy, 0.02, 0.98)])
    return out


def drawing(digit: int | str, rng: np.random.Generator, strength: float = 1.0) -> list[Stroke]:
    """A jittered drawing of `digit` (0-9), or of a non-digit (a key of NON_DIGIT_TEMPLATES)."""
    return jitter(TEMPLATES[digit] if isinstance(digit, int) else NON_DIGIT_TEMPLATES[digit], rng, strength)
