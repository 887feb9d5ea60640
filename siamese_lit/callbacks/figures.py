"""Matplotlib figures for TensorBoard's Images tab, drawn from tensors the evaluation already holds.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so drawing them in a training
process needs no display and leaves no open windows; `SummaryWriter.add_figure` renders them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional.classification import binary_roc
from torchvision.utils import make_grid

CAPTION_PX = 10  # height of the caption strip above each grid cell, in image pixels


def captioned_grid(
    images: Tensor, captions: Sequence[str], colors: Sequence[str], ncol: int, title: str
) -> Figure:
    """Images (N, H, W) in a make_grid mosaic, each with a coloured caption strip above it.

    One imshow plus one text per cell, so a grid of 64 images draws in a fraction of a second.
    Pixel values are scaled to [0, 1] over the whole grid, so normalised or uint8 images both show.
    """
    x = images.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    cells = F.pad(x, (1, 1, CAPTION_PX, 1), value=1.0).unsqueeze(1)  # white strip for the caption
    grid = make_grid(cells, nrow=ncol, padding=0)[0]
    cell_h, cell_w = cells.shape[-2:]
    nrow = -(-len(x) // ncol)
    inch = 1.2 * cell_w / 30
    fig = Figure(figsize=(ncol * inch, nrow * inch * cell_h / cell_w + 0.5), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for i, (caption, color) in enumerate(zip(captions, colors, strict=True)):
        r, c = divmod(i, ncol)
        ax.text(
            c * cell_w + cell_w / 2,
            r * cell_h + CAPTION_PX / 2,
            caption,
            color=color,
            ha="center",
            va="center",
            fontsize=7,
            fontweight="bold",
        )
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return fig


def roc_figure(distance: Tensor, target: Tensor, threshold: float, title: str) -> Figure:
    """ROC of the verification: "dissimilar" (target 1) is the positive class, scored by distance."""
    score = (distance / distance.max().clamp_min(1e-12)).cpu()
    target = target.long().cpu()
    fpr, tpr, _ = binary_roc(score, target)
    auc = float(torch.trapezoid(tpr, fpr))
    called = distance.cpu() > threshold
    op_fpr, op_tpr = float(called[target == 0].float().mean()), float(called[target == 1].float().mean())
    fig = Figure(figsize=(4.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fpr.numpy(), tpr.numpy(), color="tab:blue", label=f"ROC (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="chance")
    ax.plot([op_fpr], [op_tpr], "o", color="tab:red", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("false positive rate (similar pairs called dissimilar)")
    ax.set_ylabel("true positive rate (dissimilar pairs called dissimilar)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def project_2d(embeddings: Tensor) -> tuple[Tensor, list[str]]:
    """The embedding itself when it is 2-D, else its first two principal components (torch.pca_lowrank).

    Returns the (N, 2) points and the two axis labels (with each component's share of the variance).
    """
    x = embeddings.detach().float().cpu()
    if x.shape[1] == 2:
        return x, ["embedding dimension 1", "embedding dimension 2"]
    if x.shape[1] == 1:
        return torch.cat([x, torch.zeros_like(x)], 1), ["embedding dimension 1", "(constant)"]
    centred = x - x.mean(0)
    _, s, v = torch.pca_lowrank(centred, q=2, center=False)
    share = s.square() / centred.square().sum().clamp_min(1e-12)
    return centred @ v[:, :2], [
        f"principal component {i + 1} ({100 * float(share[i]):.0f}% of variance)" for i in range(2)
    ]


def scatter_figure(embeddings: Tensor, labels: Tensor, title: str) -> Figure:
    """2-D scatter of embeddings coloured by digit, one legend entry per digit."""
    points, axis_labels = project_2d(embeddings)
    labels = labels.cpu()
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for digit in labels.unique().tolist():
        pts = points[labels == digit]  # "C0".."C9": matplotlib's default cycle, the tab10 colours
        ax.scatter(
            pts[:, 0].numpy(), pts[:, 1].numpy(), s=4, alpha=0.7, color=f"C{digit % 10}", label=str(digit)
        )
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    ax.legend(title="digit", loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=8)
    return fig
