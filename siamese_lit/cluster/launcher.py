"""hydra-submitit-launcher's SlurmLauncher, with the failures of a cluster reported like the sweep's own.

The plugin's `launch` waits for `job.results()` of each job in turn and raises at the first job that
left no result (killed at its time limit, out of memory, a node lost), so the multirun ends with a
traceback, the later jobs' results are never read and no summary is written. Here such a job is
logged, its dir gets an `error.json` (unless the job wrote its own) with submitit's message, and the
sweep goes on: `summary.md` lists it as failed and the multirun exits 1, as for a local job that
fails. An `sbatch` that refuses the jobs (a partition or resource the cluster does not have) ends
the multirun with one `error:` line (exit code 2), the words of sbatch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SlurmLauncher
from omegaconf import OmegaConf, open_dict

from siamese_lit.utils.errors import ConfigError, exit_on_user_error
from siamese_lit.utils.files import ERROR_FILE, write_json

log = logging.getLogger(__name__)


def _wait(jobs: list[Any], refresh_s: float = 10.0) -> None:
    """Until every job is done. submitit reads a job's state from sacct less and less often as the
    job ages (up to once a minute); a job that dies leaves no result file, so only sacct tells.
    Here one sacct call for the whole array every `refresh_s` seconds."""
    last = time.monotonic()
    while not all(job.done() for job in jobs):
        time.sleep(1.0)
        if time.monotonic() - last >= refresh_s:
            jobs[0].watcher.update()
            last = time.monotonic()


class SlurmLauncher(_SlurmLauncher):
    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        import submitit

        assert self.config is not None
        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"SLURM sweep output dir: {sweep_dir}")
        numbered = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        for idx, overrides in numbered:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        args = [
            (o, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()) for idx, o in numbered
        ]
        with exit_on_user_error():
            try:
                jobs = executor.map_array(self, *zip(*args, strict=True))
            except submitit.core.utils.FailedJobError as exc:
                reason = " ".join(str(exc).split()) or type(exc).__name__
                raise ConfigError(
                    f"sbatch refused the jobs: {reason} (see conf/hydra/launcher/slurm.yaml)"
                ) from None
        log.info("SLURM job ids: %s", ", ".join(j.job_id for j in jobs))
        _wait(jobs)
        return [
            self._result(job, idx, overrides) for job, (idx, overrides) in zip(jobs, numbered, strict=True)
        ]

    def _result(self, job: Any, idx: int, overrides: list[str]) -> JobReturn:
        """The job's JobReturn; for a job that left none, one with no value, and its error.json."""
        try:
            return job.results()[0]
        except Exception as exc:  # submitit's UncompletedJobError / FailedJobError, with the job's log tail
            message = f"SLURM job {job.job_id} ended without a result ({job.state}): {exc}"
            log.error("Job %d failed: %s", idx, message.splitlines()[0])
            job_dir = self._job_dir(idx, overrides)
            if not (job_dir / ERROR_FILE).exists() and not (job_dir / "metrics.json").exists():
                write_json(job_dir / ERROR_FILE, {"error": message.splitlines()[0], "traceback": str(exc)})
            # recorded: the sweep goes on, the summary reports the job as failed
            return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)

    def _job_dir(self, idx: int, overrides: list[str]) -> Path:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = idx
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
