"""The project's logger (rank zero only for info) and logged metrics as plain floats."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table


class RankZeroInfo(logging.Filter):
    """Info and debug records from rank zero only: a DDP run's other ranks would repeat each line.
    Warnings and errors pass on every rank (a failure may be one rank's own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or rank_zero_only.rank == 0


log = logging.getLogger("siamese_lit")
log.addFilter(RankZeroInfo())


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics (tensors or numbers) as plain floats."""
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def print_metrics(metrics: Mapping[str, float], title: str) -> None:
    """One table of figures on the terminal (stdout), as Lightning prints its own."""
    table = Table(title=title)
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for name, value in sorted(metrics.items()):
        table.add_row(name, f"{value:.6g}")
    Console().print(table)
