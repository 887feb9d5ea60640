"""Speed settings and their safeguards: mixed precision where the hardware pays for it (and refused with
one line where the CPU cannot run it), float32 embeddings, the allocator tuning, and the LSTM
forget-gate init. SIAMESE_LIT_NO_BF16=1 runs them as on a CPU without bfloat16 kernels."""

from __future__ import annotations

import platform

import pytest
import torch
from hydra.utils import instantiate

from siamese_lit.cli.settings import check_run
from siamese_lit.models.encoders import SequenceEncoder
from siamese_lit.utils import precision
from siamese_lit.utils.allocator import keep_freed_memory
from siamese_lit.utils.errors import ConfigError

NO_BF16_LSTM = "this CPU has no bfloat16 kernel for the LSTM (utils/precision.py: cpu_runs_bf16_lstm)"


@pytest.fixture
def without_bf16(monkeypatch: pytest.MonkeyPatch):
    """The probe answers as on a CPU without bfloat16 kernels (SIAMESE_LIT_NO_BF16=1)."""
    monkeypatch.setenv(precision.NO_BF16_VARIABLE, "1")
    precision.cpu_runs_bf16_lstm.cache_clear()
    yield
    monkeypatch.delenv(precision.NO_BF16_VARIABLE)
    precision.cpu_runs_bf16_lstm.cache_clear()


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
    monkeypatch.setattr(precision, "cpu_runs_bf16_lstm", lambda: True)
    assert precision.auto_precision(accelerator) == expected


def test_auto_precision_is_32_where_the_cpu_has_no_bf16_kernels(monkeypatch, without_bf16) -> None:
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)
    assert precision.auto_precision("cpu") == "32-true"


def test_the_probe_is_tried_once_and_the_variable_turns_it_off(without_bf16) -> None:
    assert precision.cpu_runs_bf16_lstm() is False
    assert precision.cpu_runs_bf16_lstm.cache_info().misses == 1


@pytest.mark.parametrize("asked", ["bf16-mixed", "bf16-true"])
def test_bf16_on_a_cpu_without_its_kernels_is_one_line(make_cfg, without_bf16, asked: str) -> None:
    cfg = make_cfg(["+experiment=siamese", "trainer=cpu", f"trainer.precision={asked}"])
    with pytest.raises(
        ConfigError, match=rf"^trainer\.precision={asked}: SIAMESE_LIT_NO_BF16 is set, .*LSTM"
    ):
        check_run(cfg)
    check_run(make_cfg(["+experiment=siamese", "trainer=cpu", "trainer.precision=32-true"]))
    gpu = make_cfg(["+experiment=siamese", "trainer.accelerator=gpu", f"trainer.precision={asked}"])
    precision.check_runs_here(gpu.trainer.precision, "gpu", "trainer.precision")  # not this CPU's business


def test_trainer_and_eval_configs_resolve_to_this_machines_precision(make_cfg) -> None:
    expected = precision.auto_precision("cpu")
    assert make_cfg(["+experiment=siamese", "trainer=cpu"]).trainer.precision == expected
    assert make_cfg(["ckpt_path=x", "device=cpu"], config_name="eval").precision == expected
    assert make_cfg(["+experiment=siamese", "trainer.precision=32-true"]).trainer.precision == "32-true"


@pytest.mark.parametrize("net", ["sequence", "cnn", "mlp"])
def test_embeddings_stay_float32_under_bf16_autocast(make_cfg, net: str) -> None:
    if net == "sequence" and not precision.cpu_runs_bf16_lstm():
        pytest.skip(NO_BF16_LSTM)
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
