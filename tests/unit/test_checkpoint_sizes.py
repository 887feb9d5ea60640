"""A network's size is its own, counted on the meta device; a checkpoint's values are counted by
its storages, not by the views onto them (issue 25 item 5, issue 26)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from siamese_lit import PROJECT_ROOT
from siamese_lit.checkpoints.limits import MAX_NETWORK_ARGUMENT, check_parameters, network_parameters
from siamese_lit.checkpoints.reader import read_checkpoint
from siamese_lit.checkpoints.tensors import check_tensors, stored_values
from siamese_lit.models.encoders import Encoder
from siamese_lit.models.roles import MODEL_ROLES
from siamese_lit.utils.errors import CheckpointError, ConfigError

NETS = {
    "sequence": {"_target_": "siamese_lit.models.SequenceEncoder", "num_layers": 2, "bidirectional": True},
    "gru": {"_target_": "siamese_lit.models.SequenceEncoder", "cell": "gru", "hidden_size": 16},
    "cnn": {"_target_": "siamese_lit.models.CNNEncoder", "channels": 8, "hidden": [16]},
    "mlp": {"_target_": "siamese_lit.models.MLPEncoder", "hidden": [32, 32, 32]},
}


@pytest.mark.parametrize("name", NETS)
def test_the_meta_count_is_the_built_networks_own(name: str) -> None:
    spec = {**NETS[name], "out_dim": 5}
    built = instantiate(spec)
    assert network_parameters(spec, "model.net") == sum(t.numel() for t in built.state_dict().values())


@pytest.mark.parametrize(
    ("net", "message"),
    [
        ({"hidden_size": 10**9}, rf"net\.hidden_size=1000000000: more than the {MAX_NETWORK_ARGUMENT}"),
        ({"num_layers": 100_000}, r"model\.net\.num_layers=100000: more than"),
        ({"num_layers": 5000}, r"more than 2000 modules, parameters and buffers: refused before building"),
        ({"hidden_size": 12000}, r"network of 5.77e\+08 parameters .* more than the 5e\+07 allowed"),
        ({"hidden_size": 0}, r"model\.net\.hidden_size must be >= 1, got 0"),
        ({"input_size": -3}, r"model\.net: .*SequenceEncoder refused its arguments: ValueError: input_size"),
        (
            {"_target_": "siamese_lit.models.MLPEncoder", "input_size": -3},
            r"model\.net: .*MLPEncoder cannot be built from these arguments: RuntimeError: .*negative",
        ),
    ],
)
def test_sizes_a_network_may_not_have_are_refused_in_one_line(net: dict, message: str) -> None:
    spec = {"_target_": "siamese_lit.models.SequenceEncoder", "out_dim": 4, **net}
    with pytest.raises(ConfigError, match=message) as caught:
        check_parameters({"net": spec}, "model", network=Encoder)
    assert "\n" not in str(caught.value)


def _checkpoint(net: dict, state_dict: dict) -> dict:
    hparams = {"net": net, "optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-3}}
    return {"state_dict": state_dict, "hyper_parameters": hparams}


def test_stride0_weights_are_refused_not_counted_as_stored(tmp_path: Path) -> None:
    """The issue's checkpoint: a network of millions of parameters whose every weight is a
    `torch.zeros(1).expand(...)` view, a file of a few KB."""
    net = {"_target_": "siamese_lit.models.SequenceEncoder", "hidden_size": 1200, "num_layers": 3}
    net["out_dim"] = 8
    with torch.device("meta"):
        shapes = {f"net.{k}": v.shape for k, v in instantiate(net).state_dict().items()}
    views = {k: torch.zeros(1).expand(shape) for k, shape in shapes.items()}
    assert sum(v.numel() for v in views.values()) > 10**7
    path = tmp_path / "views.ckpt"
    torch.save(_checkpoint(net, views), path)
    assert path.stat().st_size < 100_000
    refused = r"net\.rnn\.\w+ has \d+ values but its storage holds 1 \(a stride-0"
    with pytest.raises(CheckpointError, match=refused):
        read_checkpoint(path, roles=MODEL_ROLES)


def test_views_that_fit_their_storage_count_it_once() -> None:
    """Tied weights (two views of one storage) are a legitimate checkpoint: its values are counted
    once, so a network of twice as many is refused as larger than what the file stores."""
    storage = torch.randn(40)
    tied = {"a": storage[:20].view(4, 5), "b": storage[20:].view(4, 5), "c": storage.view(8, 5)}
    check_tensors(tied, "ckpt")
    assert stored_values(tied) == 40
    net = {"_target_": "siamese_lit.models.MLPEncoder", "input_size": 4, "hidden": [4], "out_dim": 4}  # 40
    check_parameters(_checkpoint(net, tied)["hyper_parameters"], "ckpt", tied, network=Encoder)
    wider = {**net, "hidden": [5]}  # 49 values: more than the 40 stored
    more = r"networks of 49 parameters but the checkpoint stores 40 values"
    with pytest.raises(CheckpointError, match=more):
        check_parameters(_checkpoint(wider, tied)["hyper_parameters"], "ckpt", tied, network=Encoder)


def test_a_view_past_its_storage_offset_is_refused() -> None:
    base = torch.randn(10)
    with pytest.raises(CheckpointError, match=r"w has 8 values but its storage holds 6"):
        check_tensors({"w": base[4:].as_strided((8,), (0,))}, "ckpt")


def test_the_checkpoint_checks_import_no_lightning_and_name_no_upper_module() -> None:
    code = "import sys, siamese_lit.checkpoints.reader; print([m for m in sys.modules if 'lightning' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    for path in (PROJECT_ROOT / "siamese_lit" / "checkpoints").glob("*.py"):
        text = path.read_text()
        for upper in ("siamese_lit.models", "siamese_lit.objectives", "Encoder", "LitSiamese", "threshold"):
            assert upper not in text, f"{path.name} names {upper}"


def test_a_nan_threshold_means_never_validated_a_nan_weight_is_refused(tmp_path: Path) -> None:
    """The model says which of its buffers may be NaN (LitSiamese.unset_when_nan): the checkpoint
    checks name no buffer of their own."""
    from siamese_lit.models.loading import load_model
    from siamese_lit.models.siamese import LitSiamese

    hparams = {
        "net": {"_target_": "siamese_lit.models.MLPEncoder", "hidden": [8], "out_dim": 4},
        "objective": {"_target_": "siamese_lit.objectives.ContrastiveObjective", "margin": 2.0},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-3},
        "embedding_dim": 4,
    }
    state = LitSiamese(**hparams).state_dict()
    assert torch.isnan(state["threshold"])
    torch.save({"state_dict": state, "hyper_parameters": hparams}, tmp_path / "unset.ckpt")
    model, _ = load_model(tmp_path / "unset.ckpt", "Siamese")
    assert torch.isnan(model.threshold)
    state["net.net.0.bias"][0] = float("nan")
    torch.save({"state_dict": state, "hyper_parameters": hparams}, tmp_path / "nan.ckpt")
    with pytest.raises(CheckpointError, match=r"net\.net\.0\.bias holds NaN or infinite values"):
        load_model(tmp_path / "nan.ckpt", "Siamese")
