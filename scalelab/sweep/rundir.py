"""Run directory of a sweep: spec copy, plan, manifest (with fault flags) and the metrics CSV.

Layout of DIR:
  spec.toml       the spec as given
  plan.json       groups and members (Plan.to_json)
  manifest.json   {"name", "updates_done", "total_updates", "complete", "members": [row, ...]}
                  one row per member: env, family, width, depth, param_ratio, params (N),
                  flops_per_interaction, seed, lr, lr_scale, gamma, gae_lambda, ..., group, slot,
                  status ("ok" | "non_finite"), fault_update (first update flagged, or null)
  metrics.csv     long format, one row per (member, log point): METRIC_COLUMNS then the trainer's
                  own metrics; `run` = `member`; `valid` is 0 from a member's fault onwards.
                  Reads directly with pandas.read_csv and fitting's CSV reader.
  metrics.journal the same rows, one checksummed JSON line per chunk, written before the CSV
                  (scalelab.sweep.integrity): what metrics.csv is verified against and rebuilt
                  from on resume
  checkpoints/    orbax checkpoints, one per saved chunk (see scalelab.sweep.run)
  checkpoint_sums/ S.json: sha256 of every file of checkpoints/S, verified before restoring it
  .lock           the writer lock (scalelab.sweep.lock): holder pid, host and start time
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalelab.sweep.integrity import JournalEntry, MetricsJournal

__all__ = ["METRIC_COLUMNS", "RunDir"]

# Leading metrics.csv columns; the trainer's per-update metrics follow in sorted order.
METRIC_COLUMNS = (
    "run", "member", "group", "params", "flops_per_interaction", "seed", "lr", "gamma",
    "gae_lambda", "width", "depth", "update", "interactions", "score", "valid",
)


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    """Reads and writes one sweep's run directory (see the module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    spec_file = property(lambda self: self.path / "spec.toml")
    plan_file = property(lambda self: self.path / "plan.json")
    manifest_file = property(lambda self: self.path / "manifest.json")
    metrics_file = property(lambda self: self.path / "metrics.csv")
    journal_file = property(lambda self: self.path / "metrics.journal")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    checkpoint_sums_dir = property(lambda self: self.path / "checkpoint_sums")
    journal = property(lambda self: MetricsJournal(self.journal_file))

    def exists(self) -> bool:
        """Whether a sweep was started here (its manifest exists)."""
        return self.manifest_file.exists()

    def create(self, spec_text: str, plan_json: Mapping[str, Any], manifest: Mapping) -> None:
        """Start a fresh run: write spec, plan and manifest; an empty metrics file follows."""
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.spec_file, spec_text)
        _atomic_write(self.plan_file, json.dumps(plan_json, indent=1) + "\n")
        self.write_manifest(manifest)
        self.metrics_file.unlink(missing_ok=True)
        self.journal_file.unlink(missing_ok=True)

    def read_spec_text(self) -> str:
        """The spec this run was started with."""
        return self.spec_file.read_text()

    def read_manifest(self) -> dict[str, Any]:
        """The manifest as a dict (see the module docstring)."""
        return json.loads(self.manifest_file.read_text())

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Replace the manifest atomically."""
        _atomic_write(self.manifest_file, json.dumps(manifest, indent=1) + "\n")

    def append_metrics(self, rows: Sequence[Mapping[str, Any]], extra: Sequence[str],
                       chunk: int | None = None) -> None:
        """Append one chunk's rows (dicts with METRIC_COLUMNS + `extra` keys): first to the
        journal (as chunk `chunk`, default: the next one), then to metrics.csv (with the header
        if new).

        Floats are written with repr precision so a reread reproduces them bit for bit; NaN and
        infinities are written as `nan`/`inf` (pandas reads them).
        """
        columns = (*METRIC_COLUMNS, *extra)
        buf = io.StringIO()
        csv.writer(buf).writerows([_fmt(row.get(c)) for c in columns] for row in rows)
        if chunk is None:
            chunk = len(self.journal.read()[0])
        self.journal.append(JournalEntry(chunk, columns, buf.getvalue()))
        new = not self.metrics_file.exists() or self.metrics_file.stat().st_size == 0
        with self.metrics_file.open("a", newline="") as f:
            f.write((_header(columns) if new else "") + buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def restore_metrics(self, entries: Sequence[JournalEntry]) -> bool:
        """Make metrics.csv and the journal hold exactly the chunks `entries` (verified journal
        entries of chunks 0..). Returns whether metrics.csv was damaged: its rows of those
        chunks differed from the journal's (rows past them are dropped silently: a resume
        replays those chunks)."""
        text = (_header(entries[0].columns) + "".join(e.rows for e in entries)) if entries else ""
        current = self.metrics_file.read_bytes() if self.metrics_file.exists() else b""
        if current != text.encode():
            tmp = self.metrics_file.with_name("metrics.csv.tmp")
            with tmp.open("w", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.metrics_file)
        stored, problem = self.journal.read()
        if len(stored) != len(entries) or problem is not None:
            self.journal.rewrite(list(entries))
        return not current.startswith(text.encode())

    def read_metrics(self) -> list[dict[str, str]]:
        """All complete rows of metrics.csv as dicts of strings (a torn last line is dropped)."""
        if not self.metrics_file.exists():
            return []
        with self.metrics_file.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return []
            return [dict(zip(header, r, strict=True)) for r in reader if len(r) == len(header)]


def _header(columns: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(columns)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)

