"""SequenceEncoder: what it reads out of the recurrent network, and per-image standardisation."""

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
def test_the_last_layers_final_state_is_projected(bidirectional: bool) -> None:
    """Both directions of the last layer's final hidden state, against the recurrent network's own."""
    x = _images()
    net = SequenceEncoder(hidden_size=8, num_layers=3, bidirectional=bidirectional, out_dim=4)
    d = 2 if bidirectional else 1
    assert net.head.in_features == d * 8
    net.head = nn.Identity()  # the features the head would get
    _, (h, _) = net.rnn(x)
    assert torch.allclose(net(x), torch.cat(list(h[-d:]), 1), atol=1e-6)


def test_standardize_makes_the_embedding_blind_to_brightness_and_contrast() -> None:
    x = _images()
    torch.manual_seed(1)
    plain, standard = SequenceEncoder(out_dim=5), SequenceEncoder(out_dim=5, standardize=True)
    standard.load_state_dict(plain.state_dict())
    levels = 0.3 * x + 0.4  # lower contrast, brighter background
    assert torch.allclose(standard(levels), standard(x), atol=1e-4)
    assert not torch.allclose(plain(levels), plain(x), atol=1e-2)


def test_unknown_cell_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.net.cell must be one of"):
        SequenceEncoder(cell="transformer")
