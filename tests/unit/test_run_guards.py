"""The run's guards, in-process: the NaN check (its device reads, the first bad step), Ctrl-C outside a
training loop, and the root folder refused as a run dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from siamese_lit import PROJECT_ROOT
from siamese_lit.cli.ctrl_c import LINE
from siamese_lit.runs.faults import RefuseUsedOutputDir, StopOnNonFiniteLoss, TrainingDivergedError
from siamese_lit.utils.errors import exit_on_user_error


def _trainer(step: int) -> SimpleNamespace:
    return SimpleNamespace(
        current_epoch=1,
        global_step=step,
        log_every_n_steps=4,
        checkpoint_callback=None,
        state=SimpleNamespace(fn=None),  # not fitting from a checkpoint: nothing resumed from
        ckpt_path=None,
    )


def test_nan_check_reads_the_device_only_every_n_steps() -> None:
    """A meta tensor has no values: reading one on the host raises. Steps 1-3 must not read."""
    guard = StopOnNonFiniteLoss()
    for step in range(3):
        guard.on_train_batch_end(_trainer(step), None, {"loss": torch.empty((), device="meta")}, None, step)
    with pytest.raises(RuntimeError, match="meta tensors"):  # the 4th step (log_every_n_steps) reads the flag
        guard.on_train_batch_end(_trainer(3), None, {"loss": torch.empty((), device="meta")}, None, 3)


def test_nan_check_names_the_first_bad_step_and_stops_before_a_checkpoint() -> None:
    guard = StopOnNonFiniteLoss()
    losses = [1.0, float("nan"), float("inf")]
    for step, loss in enumerate(losses):  # below the check cadence: nothing raised yet
        guard.on_train_batch_end(_trainer(10 + step), None, torch.tensor(loss), None, step)
    with pytest.raises(
        TrainingDivergedError, match=r"loss became nan at epoch 1, step 11: run stopped, no checkpoint"
    ):
        guard.on_save_checkpoint(_trainer(13), None, {})  # before the checkpoint file is written
    guard.on_train_batch_end(_trainer(14), None, torch.tensor(2.0), None, 0)
    guard.on_validation_start(_trainer(14), None)  # checked and reset: no bad step since


def test_ctrl_c_outside_a_training_loop_is_one_line_and_130(capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate, compare, and train before its trainer exists: Python's KeyboardInterrupt."""
    with pytest.raises(SystemExit) as exit_, exit_on_user_error():
        raise KeyboardInterrupt
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "error: stopped by SIGINT (Ctrl-C) before it finished: run it again.\n"


def test_the_root_folder_is_never_a_run_dir(capsys: pytest.CaptureFixture[str]) -> None:
    """`hydra.run.dir=/`, refused by the Hydra callback of every task (in-process: a subprocess would
    write into `/` on a regression)."""
    before = sorted(os.listdir("/"))
    with pytest.raises(SystemExit) as exit_:
        RefuseUsedOutputDir().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": "/"}}}))
    assert exit_.value.code == 2
    assert re.fullmatch(
        r"error: / is not empty \([^)]+\): a run writes only into a new or empty folder, so that nothing "
        r"in it is overwritten\. Choose a new hydra\.run\.dir or hydra\.sweep\.dir \(or leave it to its "
        r"timestamped default\)\.\n",
        capsys.readouterr().err,
    )
    assert sorted(os.listdir("/")) == before


#: a library that, like numpy under scipy's import, turns a KeyboardInterrupt during its import into
#: an error of its own
SWALLOWING_LIBRARY = """
import sys, time
try:  # the line inside the try: a Ctrl-C right after it is the library's to swallow too
    print("importing", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    raise RuntimeError("half-imported")
"""
#: (SIGINT as Python sets it by default, even where the test runs in a shell that ignores it)
PROGRAM = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from siamese_lit.cli import ctrl_c; {install}; import swallowing_library; print('after')"
)


@pytest.mark.parametrize("installed", [True, False])
def test_ctrl_c_inside_an_import_is_one_line_and_130(installed: bool, tmp_path: Path) -> None:
    """Whatever the library makes of it: the line and 130 (without the handler: its own error)."""
    (tmp_path / "swallowing_library.py").write_text(SWALLOWING_LIBRARY)
    program = PROGRAM.format(install="ctrl_c.install()" if installed else "pass")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{PROJECT_ROOT}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", program], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "importing\n"  # inside the import, nothing earlier
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if installed:
        assert (proc.returncode, out, err) == (130, "", LINE)
    else:
        assert proc.returncode == 1 and "RuntimeError: half-imported" in err


def test_ctrl_c_outside_an_import_is_a_keyboard_interrupt(tmp_path: Path) -> None:
    """For the wrapper, or train's own handler, to stop cleanly: not the exit at once."""
    program = (
        "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from siamese_lit.cli import ctrl_c; ctrl_c.install()\n"
        "try:\n    print('waiting', flush=True); time.sleep(60)\n"
        "except KeyboardInterrupt:\n    print('caught')"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", program], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "waiting\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (0, "caught\n", "")
