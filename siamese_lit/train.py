"""`python -m siamese_lit.train +experiment=NAME [overrides]`: instantiate, fit, test, write metrics.json."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from siamese_lit.allocator import keep_freed_memory
from siamese_lit.callbacks import log_final_hparams
from siamese_lit.errors import ConfigError, exit_on_user_error
from siamese_lit.sweep import is_multirun, objective, run_job
from siamese_lit.utils import (
    claim_output_dir,
    instantiate_callbacks,
    instantiate_loggers,
    log,
    scalars,
    write_json,
)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and test the configured model; returns the final metrics (also in metrics.json)."""
    output_dir = Path(cfg.paths.output_dir)
    claim_output_dir(output_dir)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist: give the path of a .ckpt file to resume from."
        )
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # stderr stays for errors

    log.info("Instantiating data <%s> and model <%s>", cfg.data._target_, cfg.model._target_)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model: L.LightningModule = instantiate(cfg.model)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_callbacks(cfg.get("callbacks")),
        logger=instantiate_loggers(cfg.get("logger")),
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(scalars(trainer.callback_metrics))
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.monitor and checkpoint.best_model_score is not None:
            metrics[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
    if cfg.get("test", True):
        # after training, its best checkpoint; with train=false, the checkpoint given as ckpt_path
        best = ckpt_path or ""
        if cfg.get("train", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning(
                "No checkpoint (fast_dev_run, checkpointing off, no ckpt_path): testing the current weights."
            )
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(scalars(trainer.callback_metrics))
    log_final_hparams(trainer, OmegaConf.to_container(cfg, resolve=True), metrics)  # the HPARAMS tab
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", metrics)
        log.info("Metrics written to %s", output_dir / "metrics.json")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    keep_freed_memory()
    if is_multirun():
        metrics = run_job(cfg, train)  # a failing job is recorded, the sweep goes on
    else:
        with exit_on_user_error():
            metrics = train(cfg)
    return objective(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
