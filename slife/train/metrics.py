"""Training metrics on disk: `metrics.csv` rows and TensorBoard scalars (when tensorboard is installed).

Writes into the run folder: `metrics.csv` (columns `COLUMNS`: step, loss, lr, pairs/s, data-wait share,
..., then the numbers the objective logs, e.g. dinov2's dino_loss, ibot_loss, ...) and `tb/` event files. Only rank 0 makes a `MetricsLog`. On resume, rows after the resumed step are
dropped (and a last row off the log grid at it), so the csv of an interrupted run equals an uninterrupted one's.
Entry point: `MetricsLog(out_dir, start_step, extra, log_every)`. The values are measured by `loop.py`.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from slife.io import atomic_write_bytes

log = logging.getLogger(__name__)

COLUMNS = ("step", "epoch", "loss", "lr", "pairs_per_s", "data_wait_share", "grad_norm", "bad_samples")


class MetricsLog:
    """Append metric rows to metrics.csv and TensorBoard. A run resumed at `start_step` drops the rows after it,
    and the row at it too when it is off the `log_every` grid: that was the last row of a run that stopped there
    (e.g. at its --steps), over a window the resumed run goes on with and logs at the next step on the grid."""

    def __init__(self, out_dir: Path, start_step: int = 0, extra: tuple[str, ...] = (), log_every: int = 1,
                 tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.csv"
        self.columns = COLUMNS + tuple(extra)  # the loop's columns, then the objective's
        keep_to = start_step if start_step % log_every == 0 else start_step - 1
        self._truncate_after(keep_to)
        new = not self.path.exists()
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(self.columns)
            self._f.flush()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=keep_to + 1 if start_step else None)
            except ImportError:  # tensorboard not installed: csv only
                log.debug("tensorboard not installed: metrics.csv only")

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        keep = [r for i, r in enumerate(rows) if i == 0 or (r and int(r[0]) <= step)]
        if len(keep) != len(rows):
            buf = io.StringIO()
            csv.writer(buf).writerows(keep)
            atomic_write_bytes(self.path, buf.getvalue().encode())

    def write(self, row: dict) -> None:
        self._w.writerow([_fmt(row.get(c)) for c in self.columns])
        self._f.flush()
        if self.tb is not None:
            for c in self.columns[2:]:
                if row.get(c) is not None:
                    self.tb.add_scalar(f"train/{c}", row[c], row["step"])

    def image(self, tag: str, path: Path, step: int) -> None:
        """Add a preview PNG to TensorBoard."""
        if self.tb is None:
            return
        import numpy as np
        from PIL import Image

        self.tb.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self._f.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def read_metrics(path: Path) -> list[dict]:
    """metrics.csv -> rows as dicts of floats (empty cells -> None)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]
