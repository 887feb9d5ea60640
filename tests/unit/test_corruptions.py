"""The robustness suite's corruptions on real MNIST test digits: seeded, batched, each doing its damage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from siamese_lit.data.mnist import load_mnist
from siamese_lit.evaluation.corruptions import CORRUPTIONS, corrupt, corruption_grid
from siamese_lit.utils.errors import ConfigError
from tests.helpers.devices import DEVICES

#: Corruptions that draw nothing from the generator: the same for every seed.
UNSEEDED = {"lowres_8", "lowres_12", "lowres_16", "gaussian_blur", "thick", "thin", "contrast", "brightness"}


@pytest.fixture(scope="module")
def digits(data_dir: Path) -> Tensor:
    return load_mnist(data_dir, train=False)[0][:300]


def ink(images: Tensor) -> Tensor:
    """Pixels over half intensity, per image."""
    return (images > 127).sum(dim=(-2, -1))


def centre_of_mass(images: Tensor) -> Tensor:
    """(N, 2) row and column of each image's centre of mass, in pixels."""
    x = images.float()
    r = torch.arange(x.shape[-1], dtype=torch.float32)
    total = x.sum(dim=(-2, -1))
    return torch.stack([(x.sum(-1) * r).sum(-1) / total, (x.sum(-2) * r).sum(-1) / total], 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_seeded_batched_and_damaging(digits: Tensor, name: str, device: str) -> None:
    x = digits.to(device)
    out = corrupt(x, name, seed=3)
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    assert torch.equal(out, corrupt(x, name, seed=3))
    assert (out.float() - x.float()).abs().mean() > 0.02 * 255  # severe, not a rounding change
    if device != "cpu":  # the draws come from a CPU generator: the same damage on any device
        assert (out.cpu().int() - corrupt(digits, name, seed=3).int()).abs().max() <= 1


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n not in UNSEEDED])
def test_seed_changes_the_draws(digits: Tensor, name: str) -> None:
    assert not torch.equal(corrupt(digits, name, seed=0), corrupt(digits, name, seed=1))


def test_every_corruption_is_flagged_as_trained_or_held_out() -> None:
    held_out = {n for n, c in CORRUPTIONS.items() if not c.trained}
    assert held_out == {
        "motion_blur",
        "shear",
        "glass_blur",
        "shot_noise",
        "impulse_noise",
        "contrast",
        "brightness",
        "fog",
    }
    assert all(c.name == n and c.description for n, c in CORRUPTIONS.items())


def test_stroke_corruptions_change_the_ink_area(digits: Tensor) -> None:
    assert (ink(corrupt(digits, "thick")) > ink(digits)).all()
    assert (ink(corrupt(digits, "thin")) < ink(digits)).all()


def test_translate_moves_the_centre_of_mass_by_4_pixels(digits: Tensor) -> None:
    moved = (centre_of_mass(corrupt(digits, "translate")) - centre_of_mass(digits)).norm(dim=1)
    assert 3.8 < moved.median() <= 4.01 and moved.min() > 2  # less only where ink leaves the frame


@pytest.mark.parametrize("side", [8, 12, 16])
def test_lowres_keeps_only_side_x_side_worth_of_information(digits: Tensor, side: int) -> None:
    """The output is up_sampled(z) for some side x side z: its projection on that span changes nothing
    but rounding, while a clean digit is far from the span."""
    up = F.interpolate(torch.eye(side)[None], size=28, mode="linear")[0].T  # (28, side)
    project = up @ torch.linalg.pinv(up)

    def residual(images: Tensor) -> Tensor:
        x = images.float() / 255
        return (x - project @ x @ project.T).abs().amax(dim=(-2, -1))

    assert residual(corrupt(digits, f"lowres_{side}")).max() < 2 / 255
    assert residual(digits).min() > 0.05


def test_photometric_corruptions(digits: Tensor) -> None:
    assert (
        corrupt(digits, "brightness").float().mean((1, 2)) > digits.float().mean((1, 2)) + 0.3 * 255
    ).all()
    assert corrupt(digits, "contrast").amax(dim=(1, 2)).max() < 0.5 * 255
    flipped = corrupt(digits, "impulse_noise") != digits
    assert 0.05 < flipped.float().mean() < 0.1


def test_shot_noise_is_photon_counts_on_the_ink_only(digits: Tensor) -> None:
    out = corrupt(digits, "shot_noise")
    assert (out[digits == 0] == 0).all()  # no light, no photons
    assert set(out.unique().tolist()) <= {0, 85, 170, 255}  # k / 3 photons, clamped
    ink_mean = out[digits == 255].float().mean() / 255
    assert 0.74 < ink_mean < 0.81  # Poisson of mean 3, clamped at 3: E[min(N, 3)] / 3 = 0.776


def test_glass_blur_scatters_the_ink_locally(digits: Tensor) -> None:
    out = corrupt(digits, "glass_blur")
    moved = (centre_of_mass(out) - centre_of_mass(digits)).norm(dim=1)
    assert moved.median() < 0.5 and moved.max() < 2
    assert not torch.equal(out, corrupt(digits, "gaussian_blur"))
    assert (ink(out) < ink(digits)).float().mean() > 0.9  # the strokes break up and fade


def test_fog_fades_the_digit_into_an_uneven_cloud(digits: Tensor) -> None:
    out = corrupt(digits, "fog").float() / 255
    background = digits == 0
    assert (out.amax(dim=(1, 2)) <= 1.0).all() and (out[background].mean() > 0.15)
    spread = torch.stack([o[b].std() for o, b in zip(out[:50], background[:50], strict=True)])
    assert (spread > 0.03).all()  # a cloud, not a uniform grey


def test_occlusion_hides_part_of_the_ink(digits: Tensor) -> None:
    kept = ink(corrupt(digits, "occlusion")).float() / ink(digits)
    assert (kept < 1).float().mean() > 0.95 and kept.median() > 0.5


def test_grid_shows_the_digit_clean_then_under_every_corruption(digits: Tensor) -> None:
    grid = corruption_grid(digits[0])
    rows = -(-(len(CORRUPTIONS) + 1) // 6)
    assert grid.shape == (3, rows * 30 + 2, 6 * 30 + 2) and grid.dtype == torch.float32
    assert grid.min() >= 0 and grid.max() <= 1
    assert torch.allclose(grid[0, 2:30, 2:30], digits[0].float() / 255)


def test_unknown_corruption_is_a_config_error(digits: Tensor) -> None:
    with pytest.raises(ConfigError, match="valid: lowres_8, lowres_12"):
        corrupt(digits, "frost")


def test_the_docs_table_lists_every_corruption_as_the_code_describes_it() -> None:
    """docs/generalisation.md's table is the suite's: name, description and kind of each corruption."""
    from siamese_lit import PROJECT_ROOT

    rows = {
        line.split("|")[1].strip(" `"): [cell.strip() for cell in line.split("|")[2:4]]
        for line in (PROJECT_ROOT / "docs" / "generalisation.md").read_text().splitlines()
        if line.startswith("| `")
    }
    assert rows == {
        name: [c.description, "trained" if c.trained else "held out"] for name, c in CORRUPTIONS.items()
    }
