"""The source articles' own loops, timed as the reference the project's pipeline is compared with.

Each is written as the article does it (torchvision datasets with ToTensor, a DataLoader, one image
or one pair at a time), not as this project would: `bench` measures both in one process.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from bench.throughput import sync
from siamese_lit.data.mnist import load_mnist

ARTICLE_BATCH = 50


def seed_loop_img_per_s(cfg: DictConfig, steps: int, device: torch.device) -> float:
    """The source article's loop: torchvision MNIST with ToTensor, DataLoader(batch 50, 2 workers)."""
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(cfg.paths.data_dir, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=ARTICLE_BATCH, shuffle=True, num_workers=2)
    from hydra.utils import instantiate

    model = instantiate(cfg.model.net).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    it = iter(loader)
    for i in range(steps + 3):
        if i == 3:
            sync(device)
            start = time.perf_counter()
        images, labels = next(it)
        images, labels = images.view(-1, 28, 28).to(device), labels.to(device)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    sync(device)
    return steps * ARTICLE_BATCH / (time.perf_counter() - start)


def seed_pair_build_s(data_dir: str, images: int | None = None) -> float:
    """The article's construction: a batch_size=1 loader over the 60k images, image i of the first
    half paired with a random image of the second half, one at a time (30k pairs). With `images`,
    only that many are read and the time is scaled to 60k."""
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(data_dir, train=True, download=False, transform=transforms.ToTensor())
    if images is not None:
        dataset = Subset(dataset, range(images))
    start = time.perf_counter()
    images, labels = [], []
    for x, y in DataLoader(dataset, batch_size=1):
        images.append(x)
        labels.append(y)
    half = len(images) // 2
    pairs = []
    for i in range(half):
        j = half + int(torch.randint(half, (1,)))
        pairs.append((images[i], images[j], int(labels[i] != labels[j])))
    return (time.perf_counter() - start) * 60_000 / len(images)


@torch.no_grad()
def seed_eval_s_estimate(ckpt_path: Path, data_dir: str, queries: int = 100, refs: int = 10) -> float:
    """The article's EvaluateSiamese for `queries` test images — for each digit, `refs` random test
    images of it, one forward of the pair per comparison — scaled to the 10k test images."""
    from siamese_lit.models.loading import load_model

    net = load_model(ckpt_path, "Siamese")[0].net
    images, labels = load_mnist(data_dir, train=False)
    images = (images.float() / 255 - 0.1307) / 0.3081
    by_digit = [torch.nonzero(labels == d).squeeze(1) for d in range(10)]
    start = time.perf_counter()
    for q in range(queries):
        for d in range(10):
            for r in by_digit[d][torch.randint(len(by_digit[d]), (refs,))]:
                nn.functional.pairwise_distance(net(images[q : q + 1]), net(images[r : r + 1]))
    return (time.perf_counter() - start) * len(labels) / queries
