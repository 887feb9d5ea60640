"""Start-up of a command that uses a trained model: `python -m siamese_lit.compare ckpt_path=... a.png
b.png`, timed end to end (wall time and the process's peak RSS, median of several runs) for this tree
and, side by side, for another checkout (a baseline commit with its own .venv).

`python -m bench.startup [--baseline-root DIR] [--ckpt CKPT] [--runs 5] [--output FILE.json]`

Both trees compare the same two MNIST test digits (written as PNG files) with the same checkpoint,
each under its own interpreter (`<root>/.venv/bin/python` when there is one, else this one) with
its root first on PYTHONPATH; the first run of each is a warm-up (file cache) and is not counted.
Without `--ckpt`, a tiny Siamese run of this tree makes one. Run it on a quiet machine: the load
average before and after is recorded to judge that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import DATA_DIR_VARIABLE, load_mnist
from siamese_lit.utils.files import write_json

#: the tiny training run that makes a checkpoint when none is given
TINY_RUN = [
    "+experiment=siamese",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "data.train_size=2000",
    "data.val_size=1000",
    "data.test_size=500",
    "data.eval_pairs=500",
    "data.gallery_size=500",
    "model.net.hidden_size=32",
    "model.net.num_layers=1",
    "model.oneshot_episodes=5",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


def interpreter(root: Path) -> str:
    """The checkout's own Python (its .venv), else this one."""
    venv = root / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def run_once(root: Path, args: list[str], data_dir: Path, scratch: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout) of `python -m siamese_lit.compare <args>` in `root`:
    the child's own peak, from the kernel's accounting when it is reaped (wait4)."""
    env = {**os.environ, "PYTHONPATH": str(root), "SIAMESE_LIT_DATA_DIR": str(data_dir)}
    scratch.mkdir(parents=True, exist_ok=True)
    out_path, err_path = scratch / "stdout.txt", scratch / "stderr.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [interpreter(root), "-m", "siamese_lit.compare", *args], cwd=root, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"error: compare failed in {root} (exit {code}): {err_path.read_text()[-500:]}")
    return wall, usage.ru_maxrss / 1024, out_path.read_text()  # ru_maxrss: KiB on Linux


def measure(root: Path, ckpt: Path, images: list[Path], runs: int, scratch: Path, data_dir: Path) -> dict:
    """Median wall time and peak RSS of `runs` compare runs in `root`, after one warm-up run."""
    walls, rss, stdout = [], [], ""
    for i in range(runs + 1):
        args = [f"ckpt_path={ckpt}", *map(str, images), "device=cpu", f"hydra.run.dir={scratch / str(i)}"]
        wall, peak, stdout = run_once(root, args, data_dir, scratch / f"log{i}")
        if i:  # the first run fills the file cache
            walls.append(wall)
            rss.append(peak)
    return {
        "root": str(root),
        "commit": _commit(root),
        "python": interpreter(root),
        "wall_s": walls,
        "wall_median_s": statistics.median(walls),
        "peak_rss_mib": rss,
        "peak_rss_median_mib": statistics.median(rss),
        "output": stdout.strip().splitlines(),
    }


def tiny_checkpoint(scratch: Path, data_dir: Path) -> Path:
    """The last checkpoint of a tiny Siamese run of this tree."""
    out = scratch / "tiny_run"
    env = {**os.environ, "SIAMESE_LIT_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "siamese_lit.train", *TINY_RUN, f"hydra.run.dir={out}"]
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: the tiny training run failed: {done.stderr.strip()[-500:]}")
    return out / "checkpoints" / "last.ckpt"


def _commit(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-root", type=Path, help="another checkout to time side by side")
    parser.add_argument("--ckpt", type=Path, help="a Siamese checkpoint (default: a tiny run makes one)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tree (median reported)")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST root (default: as the project)")
    parser.add_argument("--output", type=Path, default=Path("startup.json"), help="the JSON to write")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.baseline_root is not None and not (args.baseline_root / "siamese_lit").is_dir():
        parser.error(f"--baseline-root {args.baseline_root} holds no siamese_lit checkout")
    data_dir = (args.data_dir or Path(os.environ.get(DATA_DIR_VARIABLE) or PROJECT_ROOT / "data")).resolve()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        scratch = Path(tmp)
        ckpt = (args.ckpt or tiny_checkpoint(scratch, data_dir)).resolve()
        x, y = load_mnist(data_dir, train=False)
        other = int((y != y[0]).nonzero()[0])
        images = [scratch / "a.png", scratch / "b.png"]
        for path, i in zip(images, (0, other), strict=True):
            Image.fromarray(x[i].numpy(), mode="L").save(path)
        trees = {"current": PROJECT_ROOT}
        if args.baseline_root is not None:
            trees["baseline"] = args.baseline_root.resolve()
        result: dict[str, Any] = {
            "command": "python -m siamese_lit.compare ckpt_path=CKPT a.png b.png device=cpu",
            "checkpoint": str(ckpt),
            "runs": args.runs,
            "load_average_before": load_before,
        }
        for name, root in trees.items():
            result[name] = measure(root, ckpt, images, args.runs, scratch / name, data_dir)
    result["load_average_after"] = os.getloadavg()[0]
    if "baseline" in result:
        for key in ("wall_median_s", "peak_rss_median_mib"):
            result[f"{key.removesuffix('_s').removesuffix('_mib')}_ratio"] = (
                result["current"][key] / result["baseline"][key]
            )
    write_json(args.output, result, sort_keys=False)
    for name in trees:
        r = result[name]
        print(
            f"{name:>8}: wall {r['wall_median_s']:.2f} s, peak RSS {r['peak_rss_median_mib']:.0f} MiB "
            f"(median of {args.runs}; {r['commit'][:10]})"
        )
    if "baseline" in result:
        print(
            f"current / baseline: wall {result['wall_median_ratio']:.2f}, "
            f"RSS {result['peak_rss_median_ratio']:.2f}"
        )
    print(f"written to {args.output}")
    return result


if __name__ == "__main__":
    main()
