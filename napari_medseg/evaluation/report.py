"""Evaluation reports: one row per case, a mean ± sd summary, a printable table and a CSV file."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.atomic import atomic_write_bytes


@dataclass
class EvaluationReport:
    """Per-case metric rows (``{"case": id, "dice_1": ..., ...}``) and what produced them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, case: str, metrics: dict[str, float]) -> None:
        self.rows.append({"case": case, **metrics})

    @property
    def columns(self) -> list[str]:
        """Metric columns in first-seen order (``case`` excluded)."""
        cols: list[str] = []
        for row in self.rows:
            cols += [k for k in row if k != "case" and k not in cols]
        return cols

    def summary(self) -> dict[str, tuple[float, float, int]]:
        """Per column ``(mean, sd, n)`` over the cases where it is finite (sd with ``ddof=0``)."""
        out = {}
        for col in self.columns:
            vals = np.asarray([row.get(col, math.nan) for row in self.rows], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                out[col] = (float(vals.mean()), float(vals.std()), int(vals.size))
            else:
                out[col] = (math.nan, math.nan, 0)
        return out

    def format_table(self, per_case: bool = True, digits: int = 3) -> str:
        """Aligned text table: one line per case (optional) and a final ``mean ± sd`` line."""
        cols = self.columns
        header = ["case", *cols]
        lines = []
        if per_case:
            for row in self.rows:
                lines.append([str(row["case"]), *(_fmt(row.get(c), digits) for c in cols)])
        summ = self.summary()
        lines.append([f"mean ± sd (n={len(self.rows)})", *(_fmt_ms(summ[c], digits) for c in cols)])
        widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*r) for r in lines]
        return "\n".join(out)

    def to_csv(self, path: str | Path) -> Path:
        """Write the per-case rows and a final ``mean`` and ``sd`` row as CSV (atomic)."""
        cols = self.columns
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["case", *cols])
        for row in self.rows:
            writer.writerow([row["case"], *(_csv(row.get(c)) for c in cols)])
        summ = self.summary()
        writer.writerow(["mean", *(_csv(summ[c][0]) for c in cols)])
        writer.writerow(["sd", *(_csv(summ[c][1]) for c in cols)])
        atomic_write_bytes(path, buf.getvalue().encode())
        return Path(path)


def _fmt(v: Any, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _fmt_ms(ms: Sequence[float], digits: int) -> str:
    mean, sd = ms[0], ms[1]
    return "nan" if math.isnan(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)
