"""Jobs of a Hydra multirun: a failing job is recorded in its own dir instead of ending the sweep.

Hydra's BasicSweeper re-raises a job's exception only after its whole batch has run, and a
`SystemExit` (how user errors end a single run) escapes Hydra's `run_job` and kills the sweep at
once; the Optuna sweeper stops on the first failure unless `max_failure_rate` allows it. So in a
multirun the job catches its own error, writes `error.json` next to where `metrics.json` would be,
and returns no objective (None): BasicSweeper ignores it and the Optuna sweeper marks the trial
failed and goes on (`max_failure_rate: 1.0`). Not NaN: with optuna 2.10, the sweeper's
`study.tell(nan)` raises, and its handler then raises again, ending the search.
`siamese_lit.summarize` lists such jobs as failed.
"""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from siamese_lit.utils.errors import ConfigError, Interrupted, find_user_error
from siamese_lit.utils.files import ERROR_FILE, write_json
from siamese_lit.utils.log import log

# strategies whose extra processes Lightning starts by re-running the command line (sys.argv)
RELAUNCHING_STRATEGIES = {"ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false"}


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_no_relaunch(cfg: DictConfig) -> None:
    """Refuse DDP that re-runs `python -m ... -m <sweep>` in a local multirun: each child would start
    the whole sweep again. A cluster launcher (SLURM) starts one process per task itself."""
    trainer = cfg.trainer
    devices = trainer.get("devices")
    processes = devices if isinstance(devices, int) else 1
    launcher = str(HydraConfig.get().launcher.get("_target_", ""))
    if (
        str(trainer.get("strategy")) in RELAUNCHING_STRATEGIES
        and processes * int(trainer.get("num_nodes", 1)) > 1
        and launcher.endswith("BasicLauncher")
    ):
        raise ConfigError(
            f"trainer.strategy={trainer.strategy} re-runs the command line for each extra process, which a "
            "local multirun (-m) cannot do: run the DDP job without -m, or sweep on SLURM with "
            "hydra/launcher=slurm (one task per device)."
        )


def run_job(cfg: DictConfig, train: Callable[[DictConfig], dict[str, float]]) -> dict[str, float]:
    """`train(cfg)` as one job of a multirun: an error is logged and written to error.json, and the
    job returns no metrics, so the sweep goes on with its other jobs. A signal (Interrupted) is
    recorded too but ends the sweep, with the signal's exit status."""
    try:
        check_no_relaunch(cfg)
        return train(cfg)
    except Exception as exc:
        user_error = find_user_error(exc)
        message = f"{type(user_error or exc).__name__}: {user_error or exc}"
        log.error("Job failed: %s", message, exc_info=user_error is None)
        write_json(
            Path(cfg.paths.output_dir) / ERROR_FILE,
            {"error": message, "traceback": "".join(traceback.format_exception(exc))},
        )
        if isinstance(user_error, Interrupted):
            print(f"error: {user_error}", file=sys.stderr, flush=True)
            raise SystemExit(user_error.exit_code) from None
        return {}


def objective(metrics: dict[str, float], name: str | None) -> float | None:
    """What the sweeper optimises: the `optimized_metric`; None when the job has no finite value
    (it failed, or diverged), which a sweeper counts as a failed trial."""
    value = metrics.get(name) if name else None
    return value if value is not None and math.isfinite(value) else None
