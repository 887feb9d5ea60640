"""`python -m siamese_lit.demo ckpt_path=PATH [index_path=INDEX] [gallery_size=N] [port=7860]`.

Checks the config, loads the Siamese checkpoint (weights only) and the gallery: an index file of
`python -m siamese_lit.index` built with the same checkpoint, or MNIST's training images embedded
at start-up; then serves the page (siamese_lit.demo.page) on this machine until Ctrl+C. A bad
config, checkpoint, index or a port in use is one `error:` line and exit code 2.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from siamese_lit.cli.command import run_command
from siamese_lit.utils.errors import ConfigError, check

if TYPE_CHECKING:
    from siamese_lit.inference.index import GalleryIndex
    from siamese_lit.inference.model import SiameseModel

#: The page has no authentication: it is served on the loopback interface only.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MNIST_TRAIN = 60000


def check_config(cfg: DictConfig) -> None:
    """ConfigError for the first setting of conf/demo.yaml out of range (their types are checked by
    Hydra: siamese_lit.cli.schemas)."""
    check(cfg.neighbours >= 1, f"neighbours must be >= 1, got {cfg.neighbours}.")
    check(
        cfg.gallery_size is None or 1 <= cfg.gallery_size <= MNIST_TRAIN,
        f"gallery_size must be in 1..{MNIST_TRAIN} or null (all), got {cfg.gallery_size}.",
    )
    for key in ("threshold", "reject_threshold"):
        check(cfg[key] is None or cfg[key] >= 0, f"{key} must be >= 0, got {cfg[key]}.")
    check(
        cfg.host in LOOPBACK,
        f"host={cfg.host!r}: the demo has no authentication and serves this machine only "
        f"({', '.join(LOOPBACK)}).",
    )
    check(1 <= cfg.port <= 65535, f"port must be in 1..65535, got {cfg.port}.")
    check_port_free(cfg.host, cfg.port)


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port={port} on {host} is not free ({exc.strerror}): stop what uses it, or pass another "
                "port=."
            ) from exc


def gallery_from_mnist(model: SiameseModel, cfg: DictConfig) -> GalleryIndex:
    """The first gallery_size MNIST training images (all by default), embedded now (timed)."""
    from siamese_lit.inference.gallery import mnist_gallery

    items = mnist_gallery(cfg.data.data_dir, cfg.gallery_size)
    start = time.perf_counter()
    index = model.build_index(items.digits, items.labels, items.sources)
    seconds = time.perf_counter() - start
    print(f"gallery: {len(items.labels)} MNIST training images, embedded in {seconds:.1f} s", flush=True)
    return index


def serve(cfg: DictConfig) -> None:
    """The task of `python -m siamese_lit.demo`: checks, loads, then serves until Ctrl-C (exit 130)."""
    check_config(cfg)  # before the libraries load: a wrong port is one line at once
    from siamese_lit.demo.engine import Recognizer, gallery_images
    from siamese_lit.inference.cli import load_siamese
    from siamese_lit.inference.index import load_index

    try:
        from siamese_lit.demo import page as page_module
    except ImportError as exc:
        raise ConfigError(
            f"the demo needs gradio ({exc}): pip install -e '.[demo]' (make install does)."
        ) from exc
    model = load_siamese(cfg, device=cfg.device)
    if cfg.index_path:
        index = load_index(cfg.index_path, fingerprint=model.fingerprint)
        print(f"gallery: {len(index.labels)} items from index_path={cfg.index_path}", flush=True)
    else:
        index = gallery_from_mnist(model, cfg)
    print(f"threshold: {model.threshold}", flush=True)
    print(f"rejection threshold: {model.rejection}", flush=True)
    images = gallery_images(cfg.data.data_dir, index.sources)
    recognizer = Recognizer(model, index, images, cfg.neighbours)
    about = (
        f"Checkpoint `{cfg.ckpt_path}` · gallery of {len(index.labels)} digits"
        f"{f' (`{cfg.index_path}`)' if cfg.index_path else ' (MNIST training images)'}"
        f" · threshold {model.threshold} · k = {cfg.neighbours}"
    )
    page_module.launch(page_module.build_page(recognizer, about), cfg.host, cfg.port)


def main() -> None:
    run_command(serve, "demo")


if __name__ == "__main__":
    main()
