"""The data settings a checkpoint saved are used unless given on the command line."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from siamese_lit.checkpoints.reader import saved_data_settings, with_saved_data


def test_data_settings_come_from_the_checkpoint_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {
        "classes": [0, 1, 2, 3, 4],
        "test_classes": [5, 6, 7, 8, 9],
        "mean": 0.5,
        "std": 0.25,
        "test_size": 7,
    }
    data = OmegaConf.create(
        {
            "_target_": "siamese_lit.data.PairDataModule",
            "data_dir": "x",
            "classes": None,
            "test_classes": None,
            "mean": 0.1307,
            "std": 0.3081,
            "test_size": None,
        }
    )
    monkeypatch.setattr("siamese_lit.checkpoints.reader.command_line_keys", lambda: {"data.mean"})
    original = data.copy()
    data = with_saved_data(data, saved_data_settings({"datamodule_hyper_parameters": saved}), "ckpt_path")
    assert original.classes is None and original.std == 0.3081  # the caller's config is left as it was
    assert data.classes == [0, 1, 2, 3, 4] and data.test_classes == [5, 6, 7, 8, 9] and data.std == 0.25
    assert data.mean == 0.1307 and data.test_size is None  # given on the command line; not a data setting
