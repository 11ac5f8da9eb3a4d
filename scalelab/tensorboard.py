"""TensorBoard export of a run's metrics: one event stream per member, interactions as the step.

The rows are metrics.csv rows (see scalelab.sweep.rundir): every numeric column that does not
identify the member or the log point becomes a scalar tag of the same name (score, returns,
losses, entropy, KL, lr used, grad norm, noise scale, ...). Rows flagged `valid` = 0 (a member's
fault onwards, when the member is frozen) are skipped, so a faulted member's curves end where it
faulted; metrics.csv keeps those rows. Empty and NaN cells (e.g. a return in a window with no
finished episode) are skipped too.

The writer is tensorboardX, from the optional extra `pip install "scalelab[tensorboard]"`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

from scalelab.sweep.rundir import METRIC_COLUMNS, RunDir
from scalelab.sweep.spec import AXIS_NAMES

__all__ = [
    "IDENTIFYING_COLUMNS", "TensorBoardMissing", "TensorBoardWriter", "export_run", "member_names",
]

# metrics.csv columns that say which member and which log point a row is (`interactions` is
# the step); every other numeric column is a metric.
IDENTIFYING_COLUMNS = frozenset(METRIC_COLUMNS) - {"score"}

# Manifest fields always in a member's directory name; other swept axes join when they vary.
_ALWAYS_NAMED = ("width", "seed", "lr")
# width and lr already name what param_ratio and lr_scale would.
_NAMED_AXES = ("width", "depth", "seed", "lr",
               *(a for a in AXIS_NAMES if a not in ("width", "param_ratio", "depth", "seed",
                                                    "lr_scale")))
_LABELS = {"width": "w", "depth": "d"}


class TensorBoardMissing(ImportError):
    """The optional TensorBoard writer (tensorboardX) is not installed."""


def _tensorboardx() -> SimpleNamespace:
    """tensorboardX's synchronous event file writer and its protos; TensorBoardMissing if absent.

    Its EventsWriter rather than SummaryWriter: SummaryWriter queues events to a thread per
    stream and its flush() does not wait for that queue, so rows written after a chunk could stay
    off disk for its flush_secs; EventsWriter writes in the caller's thread and flush() means on
    disk, with one open file and no thread per member.
    """
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary
    except ImportError:
        raise TensorBoardMissing(
            "TensorBoard export needs the optional writer tensorboardX, which is not installed. "
            'Install it with `pip install "scalelab[tensorboard]"` (or `pip install tensorboardX`'
            "), then run again; `pip install tensorboard` gives the viewer (`tensorboard "
            "--logdir DIR`)."
        ) from None
    return SimpleNamespace(EventsWriter=EventsWriter, Event=Event, SessionLog=SessionLog,
                           Summary=Summary)


def _short(value: Any) -> str:
    """A compact label for a value: 0.125 -> 0.125, 0.0003 -> 3e-4, 1.0 -> 1, 7 -> 7."""
    if not isinstance(value, float):
        return str(value)
    plain = f"{value:.3g}"
    mantissa, _, exponent = f"{value:.2e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    compact = f"{mantissa}e{int(exponent)}"
    return compact if len(compact) < len(plain) else plain


def member_names(members: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Member index -> a readable directory name, e.g. `m003_w0.125_seed1_lr3e-4`.

    `members` are manifest rows. Width, seed and lr are always named (where present); depth and
    the hyperparameter axes (gamma, ent_coef, ...) only when their value varies between members.
    The zero-padded member index keeps names unique and in member order.
    """
    digits = max(3, len(str(max((int(m["member"]) for m in members), default=0))))
    named = [k for k in _NAMED_AXES
             if any(k in m for m in members)
             and (k in _ALWAYS_NAMED or len({repr(m.get(k)) for m in members}) > 1)]
    return {
        int(m["member"]): "_".join([f"m{int(m['member']):0{digits}d}",
                                    *(f"{_LABELS.get(k, k)}{_short(m[k])}" for k in named
                                      if k in m)])
        for m in members
    }


def _number(value: Any) -> float | None:
    """The cell as a float, or None where it is empty, NaN or not a number."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _is_valid(row: Mapping[str, Any]) -> bool:
    flag = _number(row.get("valid"))
    return flag is None or flag != 0


class TensorBoardWriter:
    """One TensorBoard event stream per member, under `logdir`/<member_names name>.

    members: the manifest rows (manifest.json "members"). purge_step: on a resumed run, the
    first interactions count that is written again; events at or past it from the earlier
    attempt are hidden by TensorBoard. Raises TensorBoardMissing when the extra is not installed.
    """

    def __init__(self, logdir: str | Path, members: Sequence[Mapping[str, Any]], *,
                 purge_step: int | None = None):
        self._tbx = _tensorboardx()
        self.logdir = Path(logdir)
        self.names = member_names(members)
        self._identifying = IDENTIFYING_COLUMNS.union(*(m.keys() for m in members))
        # Event files are named by the second and opened "wb": a nanosecond suffix keeps two
        # writers in one second from overwriting each other, and sorts them in start order
        # (TensorBoard reads a directory's files in name order, which purging relies on).
        suffix = f".{time.time_ns()}"
        self._streams = {i: self._open(self.logdir / name, suffix, purge_step)
                         for i, name in self.names.items()}

    def _open(self, directory: Path, suffix: str, purge_step: int | None) -> Any:
        directory.mkdir(parents=True, exist_ok=True)
        stream = self._tbx.EventsWriter(str(directory / "events"), suffix)
        if purge_step is not None:
            start = self._tbx.SessionLog(status=self._tbx.SessionLog.START)
            stream.write_event(self._tbx.Event(wall_time=time.time(), step=purge_step,
                                               session_log=start))
        stream.flush()
        return stream

    def _summary(self, row: Mapping[str, Any]) -> Any:
        """The row's metric cells as one Summary (no values: nothing to write)."""
        values = [self._tbx.Summary.Value(tag=column, simple_value=value)
                  for column, cell in row.items()
                  if column not in self._identifying and (value := _number(cell)) is not None]
        return self._tbx.Summary(value=values)

    def write(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append metrics.csv rows (typed values or strings); returns the scalars written.

        Each valid row's metric cells go to its member's stream at step `interactions`; the
        touched streams are flushed, so TensorBoard shows them before the next call.
        """
        written = 0
        touched = set()
        for row in rows:
            if not _is_valid(row):
                continue
            member = int(row["member"])
            if member not in self._streams:
                raise ValueError(f"metrics row of member {member}, which is not in the manifest "
                                 f"this TensorBoardWriter was made with")
            summary = self._summary(row)
            if summary.value:
                self._streams[member].write_event(self._tbx.Event(
                    wall_time=time.time(), step=int(row["interactions"]), summary=summary))
                written += len(summary.value)
                touched.add(member)
        for member in touched:
            self._streams[member].flush()
        return written

    def close(self) -> None:
        """Flush and close every stream."""
        for stream in self._streams.values():
            stream.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def export_run(run_dir: str | Path, logdir: str | Path) -> int:
    """Export a finished or partial run directory to TensorBoard under `logdir`.

    Reads manifest.json and metrics.csv (see scalelab.sweep.rundir); returns the number of
    scalars written. An earlier export into the same `logdir` is hidden (purged from step 0), so
    exporting again shows each point once. Raises FileNotFoundError if `run_dir` has no
    manifest.json and TensorBoardMissing when the extra is not installed.
    """
    rd = RunDir(run_dir)
    if not rd.exists():
        raise FileNotFoundError(f"{run_dir}: no manifest.json here; not a scalelab run directory")
    with TensorBoardWriter(logdir, rd.read_manifest()["members"], purge_step=0) as writer:
        return writer.write(rd.read_metrics())
