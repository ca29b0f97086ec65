"""Writing a benchmark's raw results: its arguments and its rows, as JSON beside the other results."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import torch


def save_results(path: Path, args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """``{"args": the command-line arguments (paths as text), "rows": rows}`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                "rows": rows}, indent=2))


def device_name(device: str) -> str:
    """What ran a benchmark: the GPU's name for a CUDA device, else the processor."""
    if str(device).startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()} (torch {torch.__version__})"
