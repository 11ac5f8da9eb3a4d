"""One benchmark result as a JSON line: printed, and appended to a results file if one is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(row: dict[str, Any], out: Path | None = None) -> None:
    """Print `row` as one JSON line (flushed) and append it to `out` when given."""
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            f.write(line + "\n")
