"""An MNIST-C-style robustness suite: fixed-severity, seeded corruptions of a batch of test digits.

Each corruption is a batched tensor op on the images' device (no per-image loop) at one fixed
severity, so every model is scored on the same damaged digits. Its random draws (angles, signs,
positions, noise) come from a CPU `torch.Generator` seeded by `seed` and are moved to the device, so
a seed gives the same corruption on any device. The draws depend on the batch size: corrupt a whole
test set in one call to reproduce a suite.

`Corruption.trained` says whether the `robust` training augmentation (siamese_lit.data.augment) also
applies that kind of damage; the other kinds are held out, and robustness to them is the real test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import kornia.filters as KF
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from siamese_lit.data.augment import dilate, erode
from siamese_lit.utils.errors import ConfigError
from siamese_lit.utils.seeding import seeded

#: (images float (N, 1, H, W) in [0, 1], generator) -> images, not necessarily clamped.
CorruptionFn = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class Corruption:
    """One kind of damage at one severity; `trained`: the robust augmentation policy also applies it."""

    name: str
    fn: CorruptionFn
    description: str
    trained: bool


def _rand(generator: torch.Generator, like: Tensor, *shape: int) -> Tensor:
    """Uniform [0, 1) draws from the CPU generator, on `like`'s device: the same on every device."""
    return torch.rand(shape, generator=generator).to(like.device)


def _signs(generator: torch.Generator, like: Tensor) -> Tensor:
    """A random +-1 per image, (N,)."""
    return torch.where(_rand(generator, like, like.shape[0]) < 0.5, -1.0, 1.0)


def _warp(images: Tensor, matrix: Tensor, shift: Tensor | None = None) -> Tensor:
    """Each image sampled at `matrix` (N, 2, 2) @ its output coordinates + `shift` (N, 2), in grid units
    (the image spans [-1, 1]): a rotation, shear, zoom or shift about the centre, black outside."""
    theta = F.pad(matrix, (0, 1))
    if shift is not None:
        theta[..., 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


def _lowres(side: int) -> CorruptionFn:
    def fn(x: Tensor, generator: torch.Generator) -> Tensor:
        small = F.interpolate(x, size=side, mode="area")
        return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return fn


def _gaussian_blur(x: Tensor, generator: torch.Generator) -> Tensor:
    return KF.gaussian_blur2d(x, 11, (1.5, 1.5), border_type="constant")


def _motion_blur(x: Tensor, generator: torch.Generator) -> Tensor:
    angle = _rand(generator, x, x.shape[0]) * 360 - 180
    return KF.motion_blur(x, 7, angle, torch.zeros_like(angle), "constant", "bilinear")


def _thick(x: Tensor, generator: torch.Generator) -> Tensor:
    return dilate(x)


def _thin(x: Tensor, generator: torch.Generator) -> Tensor:
    return erode(x)


def _rotate(x: Tensor, generator: torch.Generator) -> Tensor:
    a = _signs(generator, x) * math.radians(30)
    cos, sin = torch.cos(a), torch.sin(a)
    return _warp(x, torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2))


def _shear(x: Tensor, generator: torch.Generator) -> Tensor:
    matrix = torch.eye(2, device=x.device).repeat(x.shape[0], 1, 1)
    matrix[:, 0, 1] = 0.4 * _signs(generator, x)
    return _warp(x, matrix)


def _scale(x: Tensor, generator: torch.Generator) -> Tensor:
    zoom = torch.where(_rand(generator, x, x.shape[0]) < 0.5, 0.6, 1.3)
    return _warp(x, torch.eye(2, device=x.device) / zoom.view(-1, 1, 1))


def _translate(x: Tensor, generator: torch.Generator, pixels: int = 4) -> Tensor:
    """Shift by `pixels` up, down, left or right (per image): whole pixels, so no interpolation blur."""
    direction = (_rand(generator, x, x.shape[0]) * 4).long()
    steps = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], device=x.device)
    shift = steps[direction] * (2 * pixels / x.shape[-1])  # the image spans 2 grid units
    return _warp(x, torch.eye(2, device=x.device).expand(len(x), 2, 2), -shift)


def _gaussian_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    return x + 0.3 * torch.randn(x.shape, generator=generator).to(x.device)


def _shot_noise(x: Tensor, generator: torch.Generator, photons: float = 3.0) -> Tensor:
    """Poisson (photon) noise: each pixel a Poisson count of mean `photons` x its level, over `photons`
    (MNIST-C's strongest level): the ink turns grainy, the black background stays black."""
    return torch.poisson(x.cpu() * photons, generator=generator).to(x.device) / photons


def _impulse_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Salt and pepper: 10% of the pixels set to white or black, evenly."""
    u = _rand(generator, x, *x.shape)
    return torch.where(u < 0.05, 1.0, torch.where(u < 0.1, 0.0, x))


def _stripes(x: Tensor, generator: torch.Generator, count: int = 3) -> Tensor:
    """`count` white lines per image, each horizontal or vertical, through the central 16 rows/columns."""
    n, h = x.shape[0], x.shape[-1]
    position = (6 + _rand(generator, x, n, count, 1, 1) * (h - 12)).long()
    vertical = _rand(generator, x, n, count, 1, 1) < 0.5
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = rows.view(1, 1, 1, h)
    lines = torch.where(vertical, cols == position, rows == position).any(1, keepdim=True)
    return torch.where(lines, 1.0, x)


def _glass_blur(x: Tensor, generator: torch.Generator, sigma: float = 0.7, rounds: int = 2) -> Tensor:
    """MNIST-C's glass blur, batched: Gaussian blur, `rounds` times every pixel replaced by a random
    one of its 3x3 neighbours (MNIST-C swaps pairs one at a time), Gaussian blur again."""
    n, _, h, w = x.shape
    x = KF.gaussian_blur2d(x, 5, (sigma, sigma), border_type="constant")
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    for _ in range(rounds):
        dy, dx = ((_rand(generator, x, 2, *x.shape) * 3).long() - 1).unbind(0)
        source = (rows + dy).clamp(0, h - 1) * w + (cols + dx).clamp(0, w - 1)
        x = x.flatten(2).gather(2, source.flatten(2)).view(n, 1, h, w)
    return KF.gaussian_blur2d(x, 5, (sigma, sigma), border_type="constant")


def _fog(x: Tensor, generator: torch.Generator, strength: float = 1.5, decay: float = 2.0) -> Tensor:
    """MNIST-C's fog at its first level: a fractal cloud (value noise, octaves 2 to 32 cells halving in
    weight as in its plasma fractal), scaled to [0, strength], added, and the image rescaled so that
    the ink keeps its share of the range: the digit fades into uneven grey."""
    n, _, h, w = x.shape
    cloud = torch.zeros(n, 1, 32, 32, device=x.device)
    for octave in range(1, 6):
        cells = _rand(generator, x, n, 1, 2**octave, 2**octave) * 2 - 1
        cloud += F.interpolate(cells, size=32, mode="bilinear", align_corners=False) / decay**octave
    cloud = cloud[..., :h, :w]
    low, high = cloud.amin((-2, -1), keepdim=True), cloud.amax((-2, -1), keepdim=True)
    peak = x.amax((-2, -1), keepdim=True)
    return (x + strength * (cloud - low) / (high - low)) * peak / (peak + strength)


def _occlusion(x: Tensor, generator: torch.Generator, side: int = 8) -> Tensor:
    """A black side x side patch centred on a random ink pixel (drawn with probability ∝ intensity)."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    cdf = x.reshape(n, -1).cumsum(1)
    u = _rand(generator, x, n, 1) * cdf[:, -1:]
    centre = torch.searchsorted(cdf, u).clamp_max(h * w - 1).view(n, 1, 1, 1)
    top, left = centre // w - side // 2, centre % w - side // 2
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1) - top
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w) - left
    patch = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    return torch.where(patch, 0.0, x)


def _contrast(x: Tensor, generator: torch.Generator) -> Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * 0.3 + mean


def _brightness(x: Tensor, generator: torch.Generator) -> Tensor:
    return x + 0.4


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in [
        Corruption("lowres_8", _lowres(8), "area down to 8x8, bilinear back up", True),
        Corruption("lowres_12", _lowres(12), "area down to 12x12, bilinear back up", True),
        Corruption("lowres_16", _lowres(16), "area down to 16x16, bilinear back up", True),
        Corruption("gaussian_blur", _gaussian_blur, "Gaussian blur, sigma 1.5 px", True),
        Corruption("motion_blur", _motion_blur, "7 px linear motion blur at a random angle", False),
        Corruption("glass_blur", _glass_blur, "blur, pixels shuffled among neighbours twice, blur", False),
        Corruption("thick", _thick, "strokes thickened: 3x3 dilation", True),
        Corruption("thin", _thin, "strokes thinned: 2x2 erosion", True),
        Corruption("rotate", _rotate, "rotated 30 degrees, random direction", True),
        Corruption("shear", _shear, "horizontal shear 0.4, random sign", False),
        Corruption("scale", _scale, "zoomed out to 0.6 or in to 1.3, at random", True),
        Corruption("translate", _translate, "shifted 4 px up, down, left or right", True),
        Corruption("gaussian_noise", _gaussian_noise, "Gaussian noise, std 0.3 of the range", True),
        Corruption("shot_noise", _shot_noise, "Poisson noise, 3 photons at full ink", False),
        Corruption("impulse_noise", _impulse_noise, "salt and pepper on 10% of the pixels", False),
        Corruption("stripes", _stripes, "3 white horizontal or vertical lines", True),
        Corruption("occlusion", _occlusion, "black 8x8 patch over the ink", True),
        Corruption("contrast", _contrast, "contrast reduced to 0.3 about the mean", False),
        Corruption("brightness", _brightness, "background raised by 0.4", False),
        Corruption("fog", _fog, "fractal grey cloud of up to 1.5x the ink, rescaled", False),
    ]
}


def corrupt(images: Tensor, name: str, seed: int = 0) -> Tensor:
    """uint8 (N, H, W) digits under the corruption `name`, as uint8 (N, H, W) on the same device."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}.")
    generator = seeded(seed)
    x = images.unsqueeze(1).float() / 255.0
    out = CORRUPTIONS[name].fn(x, generator).clamp(0.0, 1.0)
    return (out * 255.0).round().to(torch.uint8).squeeze(1)


def corruption_grid(image: Tensor, seed: int = 0, nrow: int = 6) -> Tensor:
    """One uint8 (H, W) digit clean and under every corruption, in the order ["clean", *CORRUPTIONS],
    as a (3, H', W') float image in [0, 1] for TensorBoard's `add_image`."""
    tiles = [image, *(corrupt(image[None], name, seed)[0] for name in CORRUPTIONS)]
    return make_grid(torch.stack(tiles).unsqueeze(1).float() / 255.0, nrow=nrow, pad_value=0.5)
