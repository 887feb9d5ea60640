"""`python -m siamese_lit.train +experiment=NAME [overrides]`: instantiate, fit, test, write metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from siamese_lit.cli.command import run_command

if TYPE_CHECKING:  # the libraries load in the task, after the wrapper is in place (Ctrl-C while they do)
    import lightning as L


def check_config(cfg: DictConfig) -> None:
    """What the user can get wrong in the config, refused before any data or model work: targets a
    model may not build, arguments of the wrong name or type (siamese_lit.checkpoints.specs), a run of
    no epochs."""
    import torch
    from torch import nn

    from siamese_lit.checkpoints.limits import check_parameters
    from siamese_lit.checkpoints.roles import NETWORK, check_roles
    from siamese_lit.checkpoints.specs import build, check_spec
    from siamese_lit.cli.settings import check_run
    from siamese_lit.models.roles import MODEL_ROLES
    from siamese_lit.utils.errors import check

    check_roles(OmegaConf.to_container(cfg.model), "model", roles=MODEL_ROLES)  # classes in place, first
    check_spec(cfg.model, "model", allowed_only=True)
    check_spec(cfg.data, "data")
    check_spec(cfg.trainer, "trainer")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    check_parameters(model, "model", network=MODEL_ROLES[NETWORK])  # sizes, on the meta device
    check_run(cfg)  # seeds, precision, finite data settings, train=false with a checkpoint
    if cfg.get("train", True):
        # the optimizer's own checks (a negative learning rate...), on a stand-in parameter
        build(
            cfg.model.optimizer, "model.optimizer", allowed_only=True, params=[nn.Parameter(torch.zeros(1))]
        )
        for key in ("max_epochs", "max_steps"):
            value = cfg.trainer.get(key)
            check(
                value is None or value == -1 or value >= 1,
                f"trainer.{key} must be >= 1 (or -1: unbounded), got {value}: a run of no training "
                "steps would write untrained metrics; to test a checkpoint, pass train=false ckpt_path=...",
            )


def train(cfg: DictConfig) -> dict[str, float]:
    """Train and test the configured model; returns the final metrics (also in metrics.json)."""
    import lightning as L

    from siamese_lit.checkpoints.specs import build
    from siamese_lit.cluster import slurm
    from siamese_lit.models.loading import check_resume
    from siamese_lit.runs.instantiate import instantiate_callbacks, instantiate_loggers
    from siamese_lit.runs.provenance import provenance
    from siamese_lit.runs.run_dir import claim_output_dir
    from siamese_lit.runs.stopping import StopCleanly
    from siamese_lit.utils.files import write_json
    from siamese_lit.utils.log import log

    output_dir = Path(cfg.paths.output_dir)
    made_at = provenance()  # the code this process runs, whatever is committed while it does
    if not slurm.requeued():  # a requeued SLURM job goes on in its own dir, from its last.ckpt
        claim_output_dir(output_dir)
    check_config(cfg)
    ckpt_path = slurm.resume_path(output_dir) or cfg.get("ckpt_path")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # stderr stays for errors

    log.info("Instantiating data <%s> and model <%s>", cfg.data._target_, cfg.model._target_)
    datamodule: L.LightningDataModule = build(cfg.data, "data")
    model: L.LightningModule = build(cfg.model, "model", allowed_only=True)
    if ckpt_path:
        check_resume(ckpt_path, model, cfg.trainer if cfg.get("train", True) else None)
    on_slurm = slurm.trainer_kwargs()
    trainer: L.Trainer = build(
        cfg.trainer,
        "trainer",
        callbacks=[*instantiate_callbacks(cfg.get("callbacks")), *on_slurm.pop("callbacks", [])],
        logger=instantiate_loggers(cfg.get("logger")),
        **on_slurm,
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    with StopCleanly(trainer):  # SIGTERM, Ctrl-C, a failed write: one line (siamese_lit.runs.stopping)
        metrics = _fit_and_test(cfg, trainer, model, datamodule, ckpt_path)
    if trainer.is_global_zero:
        write_json(output_dir / "provenance.json", made_at)
        write_json(output_dir / "metrics.json", metrics)
        log.info("Metrics written to %s", output_dir / "metrics.json")
    return metrics


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
) -> dict[str, float]:
    """Fit (resuming from `ckpt_path`), then test the best checkpoint; the final metrics."""
    from siamese_lit.callbacks import log_final_hparams
    from siamese_lit.utils.errors import ConfigError
    from siamese_lit.utils.log import log, print_metrics, scalars

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        try:
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except ValueError as exc:  # raised as the epoch's batches are counted, before the first step
            if "`val_check_interval`" not in str(exc):
                raise
            raise ConfigError(
                f"trainer.val_check_interval={trainer.val_check_interval} is more than the training batches "
                f"of an epoch ({' '.join(str(exc).split())})"
            ) from exc
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
        # Lightning's own table prints a column per test dataloader, and a Siamese model's second
        # loader is its gallery: the same figures twice. One table instead.
        trainer.test(
            model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False
        )
        metrics.update(scalars(trainer.callback_metrics))
        if trainer.is_global_zero:
            print_metrics({k: v for k, v in metrics.items() if k.startswith("test/")}, "Test")
    log_final_hparams(trainer, OmegaConf.to_container(cfg, resolve=True), metrics)  # the HPARAMS tab
    return metrics


def train_command(cfg: DictConfig) -> float | None:
    """The task of `python -m siamese_lit.train`: one run, or one job of a multirun (whose failure is
    recorded and the sweep goes on); the value an Optuna sweep optimizes."""
    from siamese_lit.runs.sweep import is_multirun, objective, run_job
    from siamese_lit.utils.allocator import keep_freed_memory

    keep_freed_memory()
    metrics = run_job(cfg, train) if is_multirun() else train(cfg)
    return objective(metrics, cfg.get("optimized_metric"))


def main() -> None:
    run_command(train_command, "train")


if __name__ == "__main__":
    main()
