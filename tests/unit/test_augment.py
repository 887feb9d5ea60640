"""Training augmentation: per-image draws on the device, seeded; the hand-written modules doing their job."""

from __future__ import annotations

from pathlib import Path

import kornia.augmentation as K
import kornia.filters as KF
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import Tensor, nn

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.augment import (
    SYMMETRIES,
    RandomBlur,
    RandomLines,
    RandomNoise,
    RandomResolution,
    RandomStrokeWidth,
    affine,
    build_augmentation,
    new_classes,
    robust,
)
from siamese_lit.data.mnist import load_mnist
from siamese_lit.utils.errors import ConfigError
from tests.helpers.devices import DEVICES

AUGMENT_DIR = PROJECT_ROOT / "conf" / "data" / "augment"
MODULES = {
    "resolution": lambda: RandomResolution((8, 20), p=1.0),
    "stroke": lambda: RandomStrokeWidth(p=1.0),
    "noise": lambda: RandomNoise(0.3, p=1.0),
    "blur": lambda: RandomBlur((0.1, 1.5), p=1.0),
    "lines": lambda: RandomLines(3, p=1.0),
    "affine": affine,
    "robust": robust,
    "robust_lines": lambda: robust(max_lines=3),
}


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> Tensor:
    """200 real test digits as the policies get them: float (B, 1, 28, 28) in [0, 1]."""
    return load_mnist(data_dir, train=False)[0][:200].unsqueeze(1).float() / 255


def ink(images: Tensor) -> Tensor:
    return (images > 0.5).sum(dim=(-3, -2, -1))


def high_frequency(images: Tensor) -> Tensor:
    """Per image, the energy of the discrete Laplacian: what resolution loss takes away."""
    laplacian = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).to(images)
    return F.conv2d(images, laplacian, padding=1).square().sum(dim=(-3, -2, -1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(MODULES))
def test_draws_are_per_image_seeded_and_in_range(digits: Tensor, name: str, device: str) -> None:
    module = MODULES[name]()  # not moved: the data module holding it is no nn.Module
    same = digits[:1].expand(32, -1, -1, -1).to(device)  # one digit 32 times: per-image draws differ
    torch.manual_seed(0)
    out = module(same)
    assert out.shape == same.shape and out.device == same.device
    assert len({tuple(o.flatten().tolist()) for o in out.cpu()}) > 1
    torch.manual_seed(0)
    assert torch.equal(module(same), out)
    if name != "noise":  # RandomNoise leaves the clamp to the policy
        assert out.min() >= 0 and out.max() <= 1


def test_resolution_is_area_down_and_bilinear_up(digits: Tensor) -> None:
    out = RandomResolution((8, 8), p=1.0)(digits)
    small = F.interpolate(digits, size=8, mode="area")
    assert torch.allclose(out, F.interpolate(small, size=28, mode="bilinear"), atol=1e-5)


def test_resolution_removes_high_frequency_detail(digits: Tensor) -> None:
    out = RandomResolution((8, 20), p=1.0)(digits)
    assert (high_frequency(out) < 0.8 * high_frequency(digits)).all()
    assert torch.equal(RandomResolution((8, 20), p=0.0)(digits), digits)


def test_stroke_width_thickens_and_thins(digits: Tensor) -> None:
    torch.manual_seed(0)
    change = ink(RandomStrokeWidth(p=1.0)(digits)) - ink(digits)
    assert (change != 0).all()
    assert 0.35 < (change > 0).float().mean() < 0.65  # half thickened, half thinned
    torch.manual_seed(0)
    kept = ink(RandomStrokeWidth(p=0.5)(digits)) == ink(digits)
    assert 0.35 < kept.float().mean() < 0.65


def test_blur_is_a_gaussian_blur_with_black_border(digits: Tensor) -> None:
    """kornia's Gaussian blur (zero padding) as the oracle, for one std and for the images left alone."""
    expected = KF.gaussian_blur2d(digits, 9, (1.5, 1.5), border_type="constant")
    assert torch.allclose(RandomBlur((1.5, 1.5), p=1.0)(digits), expected, atol=1e-5)
    assert torch.allclose(RandomBlur((0.1, 1.5), p=0.0)(digits), digits, atol=1e-6)


def test_noise_level_is_drawn_per_image(digits: Tensor) -> None:
    torch.manual_seed(0)
    std = (RandomNoise(0.3, p=1.0)(digits) - digits).std(dim=(-3, -2, -1))
    assert std.max() < 0.31 and std.min() < 0.05 and std.max() - std.min() > 0.2


def test_lines_only_add_ink_and_cross_the_image(digits: Tensor) -> None:
    torch.manual_seed(0)
    out = RandomLines(3, p=1.0)(digits)
    assert (out >= digits).all()
    added = ((out - digits) > 0.5).sum(dim=(-3, -2, -1))
    assert (added >= 10).all()  # at least one line across a good part of every image
    assert torch.equal(RandomLines(3, p=0.0)(digits), digits)


def test_axis_aligned_lines_are_rows_or_columns() -> None:
    """On a black image, one axis-aligned line is constant along its row (or column) and at most two
    pixels wide (anti-aliased)."""
    torch.manual_seed(0)
    out = RandomLines(1, width=(1.0, 1.0), axis_p=1.0, p=1.0)(torch.zeros(64, 1, 28, 28))[:, 0]
    along_rows = ((out - out[:, :, :1]).abs() < 1e-5).all(dim=2).all(dim=1)
    along_cols = ((out - out[:, :1, :]).abs() < 1e-5).all(dim=2).all(dim=1)
    assert (along_rows | along_cols).all() and along_rows.any() and along_cols.any()
    assert torch.allclose(out.sum(dim=(1, 2)), torch.full((64,), 28.0), atol=1e-3)  # width 1, anti-aliased


def test_lines_count_and_width_checked() -> None:
    with pytest.raises(ConfigError, match="max_lines"):
        RandomLines(0)
    with pytest.raises(ConfigError, match="width"):
        RandomLines(2, width=(2.0, 1.0))


@pytest.mark.parametrize("policy", ["affine", "robust"])
def test_policy_configs_compose_and_build(digits: Tensor, policy: str) -> None:
    with initialize_config_dir(config_dir=str(AUGMENT_DIR), version_base="1.3"):
        cfg = compose(config_name=policy)
    module = build_augmentation(cfg)
    assert isinstance(module, nn.Module)
    assert module(digits).shape == digits.shape


def test_no_augmentation() -> None:
    with initialize_config_dir(config_dir=str(AUGMENT_DIR), version_base="1.3"):
        assert build_augmentation(compose(config_name="none")) is None
    assert build_augmentation(None) is None


def test_a_policy_without_target_is_a_config_error() -> None:
    """The data module's old `augment: {degrees, ...}` form is gone: a policy names its _target_."""
    with pytest.raises(ConfigError, match="data.augment needs a _target_"):
        build_augmentation({"degrees": 10, "translate": 0.1, "scale": [0.9, 1.1]})
    module = build_augmentation({"_target_": "siamese_lit.data.augment.affine", "degrees": 10})
    assert isinstance(module, K.RandomAffine)


def test_bad_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nn.Module"):
        build_augmentation({"_target_": "builtins.dict"})
    with pytest.raises(ConfigError, match="mapping or null"):
        build_augmentation("robust")


def test_new_classes_label_each_symmetry_of_each_digit_apart(digits: Tensor) -> None:
    images, labels = (digits[:, 0] * 255).to(torch.uint8), torch.arange(200) % 10
    names = ["hflip", "rot90", "transpose"]
    torch.manual_seed(0)
    out, new = new_classes(images, labels, names)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    k = (new - labels) // 10
    assert torch.equal(new % 10, labels) and set(k.tolist()) == {0, 1, 2, 3}  # every variant drawn
    ops = [lambda x: x, *(SYMMETRIES[n] for n in names)]
    for i in range(len(images)):
        assert torch.equal(out[i], ops[int(k[i])](images[i]))
    assert torch.equal(new_classes(images, labels, [])[0], images)


def test_symmetries_are_the_square_s_and_change_a_digit(digits: Tensor) -> None:
    x = digits[:50, 0]
    assert torch.equal(SYMMETRIES["rot90"](SYMMETRIES["rot270"](x)), x)
    assert torch.equal(SYMMETRIES["rot180"](x), SYMMETRIES["hflip"](SYMMETRIES["vflip"](x)))
    assert torch.equal(SYMMETRIES["transpose"](x), SYMMETRIES["vflip"](SYMMETRIES["rot90"](x)))
    assert torch.equal(SYMMETRIES["antitranspose"](x), SYMMETRIES["hflip"](SYMMETRIES["rot90"](x)))
    for op in SYMMETRIES.values():
        assert (op(x) - x).abs().flatten(1).sum(1).min() > 0
