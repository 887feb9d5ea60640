"""Speed settings and their safeguards: mixed precision where the hardware pays for it, float32
embeddings, the allocator tuning, and the LSTM forget-gate init."""

from __future__ import annotations

import platform

import pytest
import torch
from hydra.utils import instantiate

from siamese_lit.models.encoders import SequenceEncoder
from siamese_lit.utils import precision
from siamese_lit.utils.allocator import keep_freed_memory


@pytest.mark.parametrize(
    ("accelerator", "amx", "expected"),
    [
        ("cpu", True, "bf16-mixed"),
        ("cpu", False, "32-true"),
        ("gpu", True, "32-true"),
        ("mps", True, "32-true"),
    ],
)
def test_auto_precision_is_bf16_only_on_an_amx_cpu(monkeypatch, accelerator, amx, expected) -> None:
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    assert precision.auto_precision(accelerator) == expected


def test_trainer_and_eval_configs_resolve_to_this_machines_precision(make_cfg) -> None:
    expected = precision.auto_precision("cpu")
    assert make_cfg(["+experiment=siamese", "trainer=cpu"]).trainer.precision == expected
    assert make_cfg(["ckpt_path=x", "device=cpu"], config_name="eval").precision == expected
    assert make_cfg(["+experiment=siamese", "trainer.precision=32-true"]).trainer.precision == "32-true"


@pytest.mark.parametrize("net", ["sequence", "cnn", "mlp"])
def test_embeddings_stay_float32_under_bf16_autocast(make_cfg, net: str) -> None:
    model = instantiate(make_cfg(["+experiment=siamese", f"model/net={net}"]).model)
    x = torch.randn(4, 28, 28)
    with precision.forward_context(torch.device("cpu"), "bf16-mixed"):
        emb, own = model(x), model.net(x)
    # the encoder's own last layer too, not only LitSiamese.forward's cast
    assert emb.dtype == own.dtype == torch.float32
    with precision.forward_context(torch.device("cpu"), "32-true"):
        assert torch.is_autocast_enabled("cpu") is False


def test_forget_bias_sets_the_lstm_forget_gates_only() -> None:
    torch.manual_seed(0)
    net = SequenceEncoder("lstm", hidden_size=8, num_layers=2, bidirectional=True, forget_bias=1.0)
    for name, bias in net.rnn.named_parameters():
        if name.startswith("bias_"):
            gates = bias.detach().view(4, 8)  # input, forget, cell, output
            assert torch.all(gates[1] == (1.0 if name.startswith("bias_ih") else 0.0)), name
            assert gates[[0, 2, 3]].abs().max() > 0  # the other gates keep PyTorch's initialisation
    torch.manual_seed(0)
    gru = SequenceEncoder("gru", hidden_size=8, forget_bias=1.0)
    torch.manual_seed(0)
    assert torch.equal(gru.rnn.bias_ih_l0, SequenceEncoder("gru", hidden_size=8).rnn.bias_ih_l0)


def test_allocator_tuning_applies_on_glibc_unless_the_environment_decides(monkeypatch) -> None:
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
