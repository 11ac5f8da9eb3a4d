"""Checksums of a run directory's persisted artefacts: checkpoints and the metrics journal.

Checkpoints: once orbax has finished writing step S, the sha256 of every file under
checkpoints/S is recorded in checkpoint_sums/S.json; a checkpoint is used only if its files
still match (a byte flip that orbax would load without complaint is caught here).

Metrics: every chunk's metrics.csv rows are first appended to metrics.journal as one JSON line
{"chunk", "columns", "rows" (the exact CSV text), "sha256"} and fsynced; on resume the
verified journal prefix is the record of the completed chunks and metrics.csv is rebuilt from it
whenever the two differ (a torn, shortened or edited CSV is never kept).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IntegrityError", "JournalEntry", "MetricsJournal", "checkpoint_problem",
           "file_sums", "write_checkpoint_sums"]


class IntegrityError(RuntimeError):
    """A run directory whose contents cannot be trusted or reused (a refused state, exit 2)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sums(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, keyed by its path relative to `root` (POSIX)."""
    return {p.relative_to(root).as_posix(): _sha256(p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_checkpoint_sums(step_dir: Path, sums_file: Path) -> None:
    """Record the checksums of the finished checkpoint `step_dir` in `sums_file` (atomically)."""
    sums_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = sums_file.with_name(sums_file.name + ".tmp")
    tmp.write_text(json.dumps(file_sums(step_dir), indent=0) + "\n")
    os.replace(tmp, sums_file)


def checkpoint_problem(step_dir: Path, sums_file: Path) -> str | None:
    """Why checkpoint `step_dir` cannot be trusted (None: every file matches its record)."""
    if not sums_file.is_file():
        return "it has no checksum record (it was not finished, or was written without one)"
    try:
        recorded = json.loads(sums_file.read_text())
    except (OSError, ValueError) as exc:
        return f"its checksum record {sums_file} is unreadable ({exc})"
    actual = file_sums(step_dir)
    changed = sorted(k for k in recorded.keys() & actual.keys() if recorded[k] != actual[k])
    missing = sorted(recorded.keys() - actual.keys())
    if changed or missing:
        what = [f"{len(changed)} file(s) changed (e.g. {changed[0]})"] if changed else []
        what += [f"{len(missing)} file(s) missing (e.g. {missing[0]})"] if missing else []
        return "its checksums do not match: " + ", ".join(what)
    return None


@dataclass(frozen=True)
class JournalEntry:
    """One completed chunk's metrics: its CSV header columns and rows (exact CSV text)."""

    chunk: int
    columns: tuple[str, ...]
    rows: str

    def digest(self) -> str:
        return _sha256(json.dumps([self.chunk, list(self.columns), self.rows]).encode())

    def line(self) -> str:
        return json.dumps({"chunk": self.chunk, "columns": list(self.columns), "rows": self.rows,
                           "sha256": self.digest()}) + "\n"


class MetricsJournal:
    """The append-only journal DIR/metrics.journal (see the module docstring)."""

    def __init__(self, file: Path):
        self.file = file

    def append(self, entry: JournalEntry) -> None:
        """Append one chunk's entry and fsync it."""
        with self.file.open("a") as f:
            f.write(entry.line())
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> tuple[list[JournalEntry], str | None]:
        """The verified entries of chunks 0, 1, ... in order, up to the first line that is torn,
        fails its checksum or is out of sequence; and a description of that line (None: all
        lines verified)."""
        if not self.file.exists():
            return [], None
        entries: list[JournalEntry] = []
        for n, line in enumerate(self.file.read_text(errors="replace").splitlines(True)):
            try:
                d = json.loads(line)
                entry = JournalEntry(int(d["chunk"]), tuple(d["columns"]), str(d["rows"]))
                ok = line.endswith("\n") and entry.digest() == d["sha256"]
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok or entry.chunk != len(entries):
                return entries, f"line {n + 1} of {self.file} is torn or fails its checksum"
            entries.append(entry)
        return entries, None

    def rewrite(self, entries: list[JournalEntry]) -> None:
        """Replace the journal by `entries` (atomically)."""
        tmp = self.file.with_name(self.file.name + ".tmp")
        with tmp.open("w") as f:
            f.writelines(e.line() for e in entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)
