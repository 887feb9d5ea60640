"""The project's side of the speed figures: the real training pipeline, its compute limit, the pair
sampler, the evaluation task and time to a target, each timed on its own (bench runs
them in one process, beside the articles' loops of bench/articles.py)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import nn

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.batches import BATCHES
from siamese_lit.data.sampler import PairSampler
from siamese_lit.utils.errors import SiameseLitError
from siamese_lit.utils.precision import forward_context
from siamese_lit.utils.seeding import seeded

SCRATCH = PROJECT_ROOT / "outputs" / "bench" / "scratch"


def compose(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """A config as the entry point would compose it (output dir set, no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def compose_experiment(experiment: str, overrides: list[str] = ()) -> DictConfig:
    return compose("train", [f"+experiment={experiment}", *overrides], SCRATCH / experiment)


class _StepTimer(L.Callback):
    """Wall time of training steps after `warmup` steps (setup, first-step allocation excluded)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step > self.warmup:
            self.end, self.steps = time.perf_counter(), trainer.global_step - self.warmup


def images_per_item(cfg: DictConfig) -> int:
    """Images in one training item: 1 for the classifier, else those of its objective's batch kind."""
    batches = cfg.data.get("batches")
    return BATCHES[batches].images if batches else 1


def pipeline_img_per_s(
    cfg: DictConfig, batch_size: int, steps: int, warmup: int = 3, save_to: Path | None = None
) -> float:
    """Training images per second through the real data module, LightningModule and Trainer
    (optionally saving the checkpoint the evaluation benchmark then loads)."""
    with open_dict(cfg):
        cfg.data.batch_size = batch_size
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    timer = _StepTimer(warmup)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        precision=cfg.trainer.precision,
        use_distributed_sampler=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=datamodule)
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return timer.steps * batch_size * images_per_item(cfg) / (timer.end - timer.start)


def compute_limit_img_per_s(cfg: DictConfig, batch_size: int, steps: int, device: torch.device) -> float:
    """The same model's forward + backward + optimizer step on one batch already on the device, in
    the experiment's precision (the bfloat16 autocast Lightning's bf16-mixed applies, or none)."""
    model = instantiate(cfg.model).to(device)
    optimizer = instantiate(model.hparams.optimizer, params=model.parameters())
    n = images_per_item(cfg)
    x = torch.randn(batch_size * n, 28, 28, device=device)
    y = torch.randint(0, 2, (batch_size,), device=device)  # a class (0-1), or y of a pair

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with forward_context(device, cfg.trainer.precision):
            out = model(x)
            loss = nn.functional.cross_entropy(out, y) if n == 1 else model.objective(out.chunk(n), y)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return batch_size * n / _seconds_per_call(step, steps, device)


def _seconds_per_call(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pair_build_s(labels: torch.Tensor, repeats: int = 5) -> float:
    """An epoch of 60k balanced pairs from the per-class tables."""
    sampler = PairSampler(labels)
    g = seeded(0)
    return _seconds_per_call(lambda: sampler.pairs(60_000, 0.5, g), repeats, torch.device("cpu"), warmup=1)


def peak_rss_mib_of_training(args: list[str]) -> float:
    """Peak resident memory of a training run (a child process running `python -m siamese_lit.train`)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    child = subprocess.run([sys.executable, "-m", "siamese_lit.train", *args], capture_output=True, text=True)
    if child.returncode != 0:  # its last line (the error: line), not a CalledProcessError hiding it
        said = [line for line in child.stderr.splitlines() if line.strip()] or ["nothing on stderr"]
        raise SiameseLitError(
            f"the peak-RSS training run exited {child.returncode}: {said[-1].removeprefix('error: ')}"
        )
    return max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


class _TargetTimer(L.Callback):
    """Seconds from the start of fit until the monitored validation metric first reaches `target`."""

    def __init__(self, metric: str, target: float) -> None:
        self.metric, self.target, self.start, self.reached = metric, target, 0.0, None
        self.history: list[float] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None:
            return
        self.history.append(round(float(value), 5))
        if self.reached is None and float(value) >= self.target:
            self.reached = time.perf_counter() - self.start
            trainer.should_stop = True


def time_to_target(experiment: str, metric: str, target: float) -> dict[str, Any]:
    """Train the experiment with its own settings until `metric` reaches `target` (or its last epoch)."""
    cfg = compose_experiment(experiment)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the same initialisation as `train`
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    timer = _TargetTimer(metric, target)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return {"metric": metric, "target": target, "seconds": timer.reached, "per_epoch": timer.history}


def eval_s(ckpt_path: Path, output_dir: Path, overrides: list[str]) -> float:
    """The `siamese_lit.evaluate` task on the 10k test images, article protocol included, without
    the robustness suite (17 more passes over the test set, which the article's evaluation has no
    counterpart of: its time is the report's `timing_s.robustness`)."""
    from siamese_lit.evaluate import evaluate

    cfg = compose("eval", [f"ckpt_path={ckpt_path}", "robustness.enabled=false", *overrides], output_dir)
    start = time.perf_counter()
    evaluate(cfg)
    return time.perf_counter() - start
