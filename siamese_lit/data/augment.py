"""Training augmentation policies: nn.Modules drawing every parameter per image, on the batch's device.

A policy takes a float batch (B, 1, H, W) of white-on-black digits in [0, 1] (before normalisation,
so the black background is 0 and zero padding matches it) and returns the same shape. kornia.augmentation
does the affine warp and the erasing; what it lacks is written here as small batched modules:
resolution loss (`RandomResolution`), stroke width (`RandomStrokeWidth`), noise of a random level
(`RandomNoise`; kornia's Gaussian noise has one fixed std), stray pen or ruling lines (`RandomLines`),
and the Gaussian blur (`RandomBlur`), which kornia has but at several times the cost.

Policies are built from plain configs (`conf/data/augment/*.yaml`) by `build_augmentation`, so a
checkpoint's hyper-parameters rebuild them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn

from siamese_lit.utils.errors import ConfigError, check


def dilate(images: Tensor) -> Tensor:
    """3x3 grey dilation of (B, C, H, W): strokes about 2 px thicker.

    Maxima of shifted slices rather than max_pool2d, whose stride-1 CPU kernel is an order of
    magnitude slower on 28x28 batches."""
    x = F.pad(images, (1, 1, 1, 1))
    x = torch.maximum(torch.maximum(x[..., :-2], x[..., 1:-1]), x[..., 2:])
    return torch.maximum(torch.maximum(x[..., :-2, :], x[..., 1:-1, :]), x[..., 2:, :])


def erode(images: Tensor) -> Tensor:
    """2x2 grey erosion of (B, C, H, W): strokes about 1 px thinner (3x3 erases many MNIST strokes).

    Minima of shifted slices, for the same speed reason as `dilate`."""
    x = F.pad(images, (0, 1, 0, 1))
    x = torch.minimum(x[..., :-1], x[..., 1:])
    return torch.minimum(x[..., :-1, :], x[..., 1:, :])


def _chosen(p: float, batch: int, device: torch.device) -> Tensor:
    """A (B,) bool mask: which images a transform applied with probability p hits."""
    return torch.rand(batch, device=device) < p


class RandomResolution(nn.Module):
    """Per image, area-downsample to a random side in `sizes` (inclusive) and bilinear-upsample back.

    Both resamplings are separable and linear, so each side s is one (H, H) matrix R_s = up_s @ down_s
    and an image becomes R_s @ x @ R_s^T: one batched matmul with a per-image matrix, with no loop
    over sizes and no host sync (boolean indexing per size would sync on a GPU).

    Args:
        sizes: (smallest, largest) side to go down to.
        p: probability that an image is resampled at all.
        image_size: side of the (square) images.
    """

    def __init__(self, sizes: Sequence[int] = (8, 20), p: float = 0.5, image_size: int = 28) -> None:
        super().__init__()
        low, high = (int(s) for s in sizes)
        check(1 <= low <= high <= image_size, f"RandomResolution sizes must be in 1..{image_size}: {sizes}.")
        self.p = p
        eye = torch.eye(image_size)
        ops = [
            F.interpolate(F.adaptive_avg_pool1d(eye[None], s), size=image_size, mode="linear")[0].T
            for s in range(low, high + 1)
        ]
        self.register_buffer("ops", torch.stack([*ops, eye]), persistent=False)  # last: unchanged

    def forward(self, images: Tensor) -> Tensor:
        if self.ops.device != images.device or self.ops.dtype != images.dtype:
            # the data module holding a policy is no nn.Module: nothing else moves this buffer
            self.ops = self.ops.to(images)
        b, n = images.shape[0], self.ops.shape[0] - 1
        pick = torch.randint(n, (b,), device=images.device)
        pick = torch.where(_chosen(self.p, b, images.device), pick, n)
        op = self.ops[pick].unsqueeze(1)  # (B, 1, H, H)
        return op @ images @ op.transpose(-1, -2)


class RandomStrokeWidth(nn.Module):
    """Per image, with probability p: thicken (3x3 dilation) or thin (2x2 erosion), evenly; else leave."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, images: Tensor) -> Tensor:
        b = images.shape[0]
        u = torch.rand(b, 1, 1, 1, device=images.device)
        out = torch.where(u < self.p / 2, dilate(images), images)
        return torch.where((u >= self.p / 2) & (u < self.p), erode(images), out)


class RandomBlur(nn.Module):
    """Per image, with probability p, a Gaussian blur of a std drawn uniformly in `sigma`; black beyond
    the border.

    kornia's RandomGaussianBlur draws the same, but costs several times more CPU time on a 512-image
    batch; here it is one separable grouped convolution with a kernel per image (a unit impulse for the
    images left alone), so the cost does not depend on p.
    """

    def __init__(self, sigma: Sequence[float] = (0.1, 1.5), p: float = 0.5, kernel_size: int = 9) -> None:
        super().__init__()
        check(kernel_size % 2 == 1, f"RandomBlur kernel_size must be odd, got {kernel_size}.")
        self.sigma, self.p, self.kernel_size = (float(sigma[0]), float(sigma[1])), p, kernel_size

    def forward(self, images: Tensor) -> Tensor:
        b, c, h, w = images.shape
        k, dev = self.kernel_size, images.device
        std = torch.empty(b, 1, device=dev, dtype=images.dtype).uniform_(*self.sigma)
        offset = torch.arange(k, device=dev, dtype=images.dtype) - k // 2
        kernel = torch.exp(-offset.square() / (2 * std.square()))
        kernel = torch.where(
            _chosen(self.p, b, dev)[:, None], kernel / kernel.sum(1, keepdim=True), offset == 0
        )
        kernel = kernel.repeat_interleave(c, 0)
        x = F.conv2d(
            images.reshape(1, b * c, h, w), kernel.view(-1, 1, k, 1), padding=(k // 2, 0), groups=b * c
        )
        x = F.conv2d(x, kernel.view(-1, 1, 1, k), padding=(0, k // 2), groups=b * c)
        return x.view(b, c, h, w)


class RandomNoise(nn.Module):
    """Per image, with probability p, additive Gaussian noise of a std drawn uniformly in [0, max_std].

    kornia's RandomGaussianNoise has one fixed std; a range of levels teaches both faint and heavy noise.
    The result is not clamped: the policy clamps once at its end.
    """

    def __init__(self, max_std: float = 0.3, p: float = 0.5) -> None:
        super().__init__()
        self.max_std, self.p = max_std, p

    def forward(self, images: Tensor) -> Tensor:
        b = images.shape[0]
        std = torch.rand(b, 1, 1, 1, device=images.device) * self.max_std
        std = std * _chosen(self.p, b, images.device).view(b, 1, 1, 1)
        return images + std * torch.randn_like(images)


class RandomLines(nn.Module):
    """Per image, with probability p, 1 to `max_lines` straight white lines across it: the ruling of a
    form or of lined paper, a stray pen stroke.

    Each line has a random width in `width` (pixels) and passes through a random point of the central
    `extent` of the image; it is horizontal or vertical with probability `axis_p` (rulings and form
    boxes), at a uniform angle otherwise. Drawn anti-aliased from each pixel's distance to the line, all
    lines of all images at once: (B, L, H, W) distances, then a max over the lines.
    """

    def __init__(
        self,
        max_lines: int = 3,
        width: Sequence[float] = (1.0, 2.0),
        axis_p: float = 0.5,
        extent: float = 0.6,
        p: float = 0.5,
    ) -> None:
        super().__init__()
        check(max_lines >= 1, f"RandomLines max_lines must be >= 1, got {max_lines}.")
        check(0 < width[0] <= width[1], f"RandomLines width must be (min, max) > 0, got {width}.")
        self.max_lines, self.width, self.axis_p, self.extent, self.p = (
            max_lines,
            (float(width[0]), float(width[1])),
            axis_p,
            extent,
            p,
        )

    def forward(self, images: Tensor) -> Tensor:
        b, _, h, w = images.shape
        n, dev, dt = self.max_lines, images.device, images.dtype

        def draw() -> Tensor:
            return torch.rand(b, n, device=dev, dtype=dt)

        # the line's normal: axis-aligned (0 or 90 degrees) or uniform; a central point it goes through
        angle = torch.where(draw() < self.axis_p, (draw() < 0.5).to(dt) * (torch.pi / 2), draw() * torch.pi)
        centre_y = (0.5 + (draw() - 0.5) * self.extent) * h
        centre_x = (0.5 + (draw() - 0.5) * self.extent) * w
        half = (self.width[0] + draw() * (self.width[1] - self.width[0])) / 2
        ys = torch.arange(h, device=dev, dtype=dt).view(1, 1, h, 1) + 0.5
        xs = torch.arange(w, device=dev, dtype=dt).view(1, 1, 1, w) + 0.5
        cos, sin = (t.view(b, n, 1, 1) for t in (torch.cos(angle), torch.sin(angle)))
        dist = ((ys - centre_y.view(b, n, 1, 1)) * cos + (xs - centre_x.view(b, n, 1, 1)) * sin).abs()
        ink = (half.view(b, n, 1, 1) + 0.5 - dist).clamp(0.0, 1.0)
        # 1..max_lines lines per chosen image, none for the others
        count = torch.randint(1, n + 1, (b, 1), device=dev) * _chosen(self.p, b, dev).view(b, 1)
        ink = ink * (torch.arange(n, device=dev).view(1, n) < count).view(b, n, 1, 1)
        return torch.maximum(images, ink.amax(1, keepdim=True))


#: symmetries of the square as ops on (..., H, W): each turns a digit into a shape no digit has (a
#: mirrored 3, a 4 on its side), which `new_classes` makes a class of its own
SYMMETRIES = {
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
    "transpose": lambda x: x.transpose(-2, -1),
    "antitranspose": lambda x: x.rot90(2, (-2, -1)).transpose(-2, -1),
}


def new_classes(
    images: Tensor, labels: Tensor, symmetries: Sequence[str], stride: int = 10
) -> tuple[Tensor, Tensor]:
    """Each image left as it is or put under one of `symmetries` (SYMMETRIES' names), drawn uniformly
    per image; the label of the k-th symmetry becomes label + stride k: a new class per (class,
    symmetry). `stride` must exceed every label (10 for digits; more with glyph classes beside them).

    Class augmentation, as few-shot learning does with rotated Omniglot characters: a model trained on
    five digits learns what separates five shapes; with their mirrored and turned versions it learns to
    separate several times more, which is what digits it never saw need. All variants of the batch are
    built at once and one is picked per image by indexing.
    """
    variants = torch.stack([images, *(SYMMETRIES[name](images) for name in symmetries)])
    k = torch.randint(len(variants), (len(images),), device=images.device)
    return variants[k, torch.arange(len(images), device=images.device)], labels + stride * k


def affine(
    degrees: float = 10.0, translate: float = 0.1, scale: Sequence[float] = (0.9, 1.1), p: float = 1.0
) -> K.RandomAffine:
    """kornia's RandomAffine without shear: rotation in +-degrees, shift up to `translate` of the side
    on each axis, isotropic zoom in `scale`."""
    return K.RandomAffine(degrees=degrees, translate=(translate, translate), scale=tuple(scale), p=p)


def robust(
    degrees: float = 25.0,
    translate: float = 0.15,
    scale: Sequence[float] = (0.75, 1.2),
    sizes: Sequence[int] = (8, 20),
    blur_sigma: Sequence[float] = (0.1, 1.5),
    noise_std: float = 0.3,
    erase: Sequence[float] = (0.04, 0.12),
    max_lines: int = 3,
    p: float = 0.25,
) -> nn.Sequential:
    """Affine, lines (when `max_lines` > 0), resolution loss, Gaussian blur, stroke width, noise and
    erasing, each applied with probability p.

    Shear is left out on purpose: it stays a held-out corruption of the robustness suite. Erasing
    (Cutout, DeVries & Taylor 2017: a black rectangle of `erase` (min, max) of the image's area) is the
    kind of damage of the suite's `occlusion`, lines that of its `stripes`. Lines are drawn before the
    resampling and blur, which soften them as they soften the digit; noise comes last, so it is not
    blurred away; the final clamp keeps the range of a real (clamped) image.
    """
    lines = [RandomLines(max_lines, p=p)] if max_lines > 0 else []
    return nn.Sequential(
        affine(degrees, translate, scale, p),
        *lines,
        RandomResolution(sizes, p),
        RandomBlur(blur_sigma, p),
        RandomStrokeWidth(p),
        K.RandomErasing(scale=tuple(erase), ratio=(0.5, 2.0), value=0.0, p=p),
        RandomNoise(noise_std, p),
        nn.Hardtanh(0.0, 1.0),
    )


def build_augmentation(spec: Mapping[str, Any] | nn.Module | None) -> nn.Module | None:
    """The augmentation module a config describes: None or {} -> None (no augmentation); a mapping
    with `_target_` (conf/data/augment/) -> instantiated."""
    if spec is None or isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"data.augment must be a config mapping or null, got {type(spec).__name__}.")
    if not spec:
        return None
    if "_target_" not in spec:
        raise ConfigError("data.augment needs a _target_: choose data/augment=none, affine or robust.")
    module = instantiate(spec)
    check(isinstance(module, nn.Module), f"data.augment: {spec['_target_']} does not build an nn.Module.")
    return module
