"""What every CPU benchmark here records beside its numbers: the machine, and the JSON file
(``perf/gpu_check.py`` keeps its own copy: it must run alone on a machine without this repository)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> dict:
    import torch
    import transformers

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write(result: dict, out: Path) -> None:
    """``result`` as indented JSON at ``out`` (folders created), and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
