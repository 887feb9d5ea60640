"""Sweeps and scale-out: Hydra multirun + summary, an Optuna search, DDP on 2 CPU processes, SLURM config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from siamese_lit.data.loader import BatchLoader
from siamese_lit.summarize import main as summarize_main
from tests.helpers.runs import CONF_DIR, TINY_SIAMESE, compose_cfg, read_summary, run_cli
from tests.helpers.runs import smaller_siamese as tiny


@pytest.fixture(scope="module")
def multirun(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[Path, subprocess.CompletedProcess]:
    """A 3-job sweep over the margin; the job with margin -1 fails (a config error)."""
    sweep_dir = tmp_path_factory.mktemp("multirun") / "sweep"
    proc = run_cli(
        "siamese_lit.train",
        ["-m", *tiny(), "model.objective.margin=1.0,-1.0,2.0", f"hydra.sweep.dir={sweep_dir}"],
    )
    return sweep_dir, proc


def test_multirun_writes_one_dir_with_metrics_per_job_and_summarizes_them(multirun) -> None:
    sweep_dir, proc = multirun
    for job, margin in (("0", "1.0"), ("2", "2.0")):
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert 0.0 <= metrics["test/auroc"] <= 1.0 and "val/auroc_best" in metrics, proc.stderr[-3000:]
        assert f"model.objective.margin={margin}" in OmegaConf.load(
            sweep_dir / job / ".hydra" / "overrides.yaml"
        )
    rows = read_summary(sweep_dir)
    assert {(r["job"], r["model.objective.margin"], r["status"]) for r in rows} == {
        ("0", "1.0", "ok"),
        ("2", "2.0", "ok"),
        ("1", "-1.0", "failed"),
    }
    best = [float(r["val/auroc_best"]) for r in rows if r["status"] == "ok"]
    assert best == sorted(best, reverse=True) and rows[-1]["status"] == "failed"  # best first, failed last
    summary = (sweep_dir / "summary.md").read_text()
    assert "| model.objective.margin |" in summary
    # optimized_metric is derived from the monitor in the jobs' config, read without interpolating
    assert "sorted by `val/auroc_best`, max first" in summary


def test_failing_job_is_reported_and_the_other_jobs_finish(multirun) -> None:
    sweep_dir, proc = multirun
    assert proc.returncode == 1
    assert (
        "error: 1 of 3 jobs failed: 1 (job 1: ConfigError: model.objective.margin must be > 0" in proc.stderr
    )
    failed = sweep_dir / "1"
    assert "model.objective.margin must be > 0" in json.loads((failed / "error.json").read_text())["error"]
    assert not (failed / "metrics.json").exists() and (sweep_dir / "2" / "metrics.json").is_file()


def test_summarize_cli_rewrites_the_summary(multirun, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir, _ = multirun
    before = read_summary(sweep_dir)
    (sweep_dir / "summary.csv").unlink()
    summarize_main([str(sweep_dir)])
    printed = capsys.readouterr().out
    assert read_summary(sweep_dir) == before
    assert "3 jobs, 1 failed; sorted by `val/auroc_best`, max first." in printed
    proc = run_cli("siamese_lit.summarize", [str(sweep_dir / "0")])  # a job dir, not a multirun dir
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "holds no job dirs" in proc.stderr


def test_optuna_search_runs_its_trials_and_reports_the_best(tmp_path: Path, data_dir: Path) -> None:
    sweep_dir = tmp_path / "optuna"
    args = [*tiny(model__net__hidden_size="choice(8,16)"), "hparams_search=siamese_optuna"]
    proc = run_cli("siamese_lit.train", [*args, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    trials = [json.loads((sweep_dir / j / "metrics.json").read_text())["val/auroc_best"] for j in ("0", "1")]
    assert results.best_value == pytest.approx(max(trials))  # the sweeper maximises val/auroc_best
    assert set(results.best_params) >= {"model.optimizer.lr", "model.objective.margin", "data.batch_size"}
    assert f"Best value: {results.best_value}" in proc.stderr + proc.stdout
    assert "Optuna best value" in (sweep_dir / "summary.md").read_text()


def test_ddp_on_two_cpu_processes_matches_a_single_process_test(tmp_path: Path, data_dir: Path) -> None:
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp = run_cli(
        "siamese_lit.train",
        [*tiny(trainer__devices="2", data__batch_size="128"), "trainer=ddp", f"hydra.run.dir={ddp_dir}"],
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "MEMBER: 1/2" in ddp.stdout + ddp.stderr  # rank 0 of a 2-process group
    ckpt = next((ddp_dir / "checkpoints").glob("epoch_*.ckpt"))
    # each rank trains on its half of the 1000 pairs per epoch: 500 // 128 steps, not 1000 // 128
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 500 // 128
    single = run_cli(
        "siamese_lit.train",
        [*tiny(data__batch_size="128"), "train=false", f"ckpt_path={ckpt}", f"hydra.run.dir={single_dir}"],
    )
    assert single.returncode == 0, single.stderr[-3000:]
    distributed, reference = (json.loads((d / "metrics.json").read_text()) for d in (ddp_dir, single_dir))
    tested = {k for k in reference if k.startswith("test/")}
    assert {"test/auroc", "test/pair_acc", "test/knn_acc", "test/loss"} <= tested
    for name in tested:
        assert distributed[name] == pytest.approx(reference[name], abs=1e-4), name
    assert list(ddp_dir.rglob("metrics.json")) == [ddp_dir / "metrics.json"]  # written by rank zero only


def _shard(loader: BatchLoader, rank: int, world: int, epoch: int = 0) -> tuple[torch.Tensor, int]:
    """The row positions one rank's loader yields in an epoch, and its number of batches."""
    rows, n = loader.rows, loader.num_rows
    loader.rows = lambda e: (*rows(e), torch.arange(n))  # tag each row with its position
    loader.take = lambda *batch: batch[-1]
    loader.context = lambda: (epoch, rank, world)
    batches = list(loader)
    loader.rows = rows
    return torch.cat(batches), len(batches)


@pytest.mark.parametrize("experiment", ["siamese", "classifier"])
def test_two_ranks_share_an_epoch_without_overlap(experiment: str, data_dir: Path, tmp_path: Path) -> None:
    cfg = compose_cfg([f"+experiment={experiment}", *TINY_SIAMESE[:3], "data.batch_size=64"], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    (rank0, steps0), (rank1, steps1) = (_shard(loader, rank, 2) for rank in (0, 1))
    assert steps0 == steps1 > 0  # DDP needs the same number of steps on every rank
    seen = torch.cat([rank0, rank1])
    assert seen.unique().numel() == len(seen)  # no row (pair or image) twice in the epoch
    assert (
        loader.num_rows - 2 * 64 <= len(seen) <= loader.num_rows
    )  # at most a partial batch per rank left out


def test_slurm_launcher_config_composes() -> None:
    overrides = [
        "+experiment=siamese",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra/launcher=slurm",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train", overrides=[*overrides, "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.siamese_lit_slurm.SlurmLauncher"
    # one task per device, as Lightning's SLURM environment needs
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu" and launcher.timeout_min == 240
    assert type(instantiate(launcher)).__name__ == "SlurmLauncher"
    # a CPU run asks for no GPU (a partition without GPUs refuses --gpus-per-node); "auto": one task
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cpu = compose("train", overrides=[*overrides, "trainer.accelerator=cpu"], return_hydra_config=True)
        auto = compose(
            "train", overrides=["+experiment=siamese", "hydra/launcher=slurm"], return_hydra_config=True
        )
    assert (cpu.hydra.launcher.tasks_per_node, cpu.hydra.launcher.gpus_per_node) == (4, None)
    assert (auto.hydra.launcher.tasks_per_node, auto.hydra.launcher.gpus_per_node) == (1, 1)
