"""SequenceEncoder's options: what it reads out of the recurrent network, and per-image standardisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from siamese_lit.models.encoders import SequenceEncoder
from siamese_lit.utils.errors import ConfigError


def _images(n: int = 6) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 28, 28)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_readouts_project_what_they_name(bidirectional: bool) -> None:
    """`last`, `layers` and `mean` against the recurrent network's own outputs, through one head."""
    x = _images()
    nets = {
        r: SequenceEncoder(hidden_size=8, num_layers=3, bidirectional=bidirectional, out_dim=4, readout=r)
        for r in ("last", "layers", "mean")
    }
    d = 2 if bidirectional else 1
    assert nets["layers"].head.in_features == 3 * d * 8 and nets["last"].head.in_features == d * 8
    for readout, net in nets.items():
        net.head = nn.Identity()  # the features the head would get
        out, (h, _) = net.rnn(x)
        expected = {
            "last": torch.cat(list(h[-d:]), 1),
            "layers": torch.cat(list(h), 1),
            "mean": out.mean(1),
        }[readout]
        assert torch.allclose(net(x), expected, atol=1e-6), readout


def test_standardize_makes_the_embedding_blind_to_brightness_and_contrast() -> None:
    x = _images()
    torch.manual_seed(1)
    plain, standard = SequenceEncoder(out_dim=5), SequenceEncoder(out_dim=5, standardize=True)
    standard.load_state_dict(plain.state_dict())
    levels = 0.3 * x + 0.4  # lower contrast, brighter background
    assert torch.allclose(standard(levels), standard(x), atol=1e-4)
    assert not torch.allclose(plain(levels), plain(x), atol=1e-2)


def test_unknown_readout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="readout must be one of"):
        SequenceEncoder(readout="max")
