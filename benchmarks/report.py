"""What every benchmark prints and records: the machine it ran on and a plain-text table."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch


def machine() -> dict[str, Any]:
    """The machine and library versions a result was measured with."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def table(rows: list[list[Any]], header: list[str]) -> str:
    """Rows under a header, columns padded, floats to 4 significant digits."""
    cells = [header] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
