"""The run's metrics file ``metrics.csv`` (and TensorBoard when asked for and importable).

Kept out of the loop because its rules are about files, not training: only rank 0 writes, the
columns are fixed when the run is built, and a resumed run first drops the rows a crashed run
wrote after the checkpoint it resumes from, so the file always describes exactly this run.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "format_row"]

_LOG = logging.getLogger(__name__)


class MetricsLog:
    """Rows of per-step metrics, appended to ``<output_dir>/metrics.csv``.

    Args:
        output_dir: Run folder (created on the first write).
        columns: CSV columns in order; keys of a row outside them are ignored.
        enabled: Whether this process writes (rank 0); on other ranks every call does nothing.
        tensorboard: Also write scalars under ``<output_dir>/tensorboard`` when
            ``torch.utils.tensorboard`` imports (otherwise a warning and CSV only).
    """

    def __init__(
        self, output_dir: Path, columns: list[str], *, enabled: bool, tensorboard: bool
    ) -> None:
        self.output_dir = output_dir
        self.columns = columns
        self.enabled = enabled
        self.tensorboard = tensorboard
        self._writer = None

    @property
    def path(self) -> Path:
        """The CSV file."""
        return self.output_dir / "metrics.csv"

    def open(self, *, config_yaml: str, step: int) -> None:
        """Write ``config.yaml``, trim the CSV to rows up to ``step`` and start TensorBoard.

        Args:
            config_yaml: The run's configuration, saved next to the checkpoints.
            step: Steps already done (0 for a fresh run); later rows are dropped.
        """
        if not self.enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(config_yaml)
        path = self.path
        if path.exists():
            # Drop rows a crashed run wrote after the checkpoint being resumed, and rows of
            # another layout (an overwritten run), so the file describes this run only.
            with path.open(newline="") as stream:
                reader = csv.DictReader(stream)
                same_layout = reader.fieldnames == self.columns
                rows = [r for r in reader if same_layout and int(r["step"]) <= step]
            with path.open("w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(rows)
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                _LOG.warning("train.log=tensorboard but tensorboard is not installed; CSV only")
            else:
                self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (``None`` becomes an empty cell) and its numbers to TensorBoard."""
        if not self.enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.path
        new_file = not path.exists()
        with path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
        if self._writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        """Flush and close TensorBoard (the CSV is closed after every row)."""
        if self._writer is not None:
            self._writer.close()


def format_row(row: Mapping[str, Any], total_steps: int) -> str:
    """One log line of a metrics row: step and epoch first, per-class IoUs and blanks left out."""
    shown = []
    for key, value in row.items():
        if key in ("step", "epoch") or key.startswith("val_iou_") or value is None:
            continue
        shown.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return f"step {row['step']}/{total_steps} epoch {row['epoch']}: " + ", ".join(shown)
