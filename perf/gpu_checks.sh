#!/usr/bin/env bash
# The GPU checks of the production path, one after another, each within its own time limit, for a
# machine with a CUDA GPU, torch and transformers, and no network:
#   1. perf/gpu_losses.py  - the chunked NLL, Unilogit and UnDIAL at V = 128,256 in bf16 against
#                            their plain formulas: peak memory, time, value and gradient;
#   2. perf/activations.py - the plan's activation formula against torch.cuda.max_memory_allocated,
#                            with and without gradient checkpointing;
#   3. perf/gpu_trial.py   - preparation, references and one trial per method (Unilogit, UnDIAL) run
#                            by the trial worker's code through DeepSpeed ZeRO-3 in bf16, SmolLM2-135M's
#                            shape, then Llama-3.2-1B's.
# What is missing of DeepSpeed's dependencies is installed from a directory of wheels (--wheels), and
# the tokenizer comes from a model directory (--tokenizer). Results go to --results (perf/results).
#
#   perf/gpu_checks.sh --wheels DIR --tokenizer DIR [--results DIR] [--only STEP,...]
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=$ROOT/perf/results
WHEELS=
TOKENIZER=
ONLY=losses,activations,trial-135m,trial-1b
while [ $# -gt 0 ]; do
  case $1 in
    --wheels) WHEELS=$2; shift 2 ;;
    --tokenizer) TOKENIZER=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "usage: $0 --wheels DIR --tokenizer DIR [--results DIR] [--only STEP,...]" >&2; exit 2 ;;
  esac
done
[ -n "$TOKENIZER" ] || { echo "--tokenizer: a model directory with the tokenizer's files is needed" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__,
"transformers", transformers.__version__)'

if ! "$PYTHON" -c 'import deepspeed' 2> /dev/null; then  # into a directory of its own, beside what is there
  [ -n "$WHEELS" ] || { echo "deepspeed is missing and no --wheels directory was given" >&2; exit 2; }
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu-checks-site-XXXXXX")
  "$PYTHON" -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target "$SITE" deepspeed hjson msgpack \
    einops pydantic pydantic-core annotated-types typing-inspection typing-extensions py-cpuinfo ninja nvidia-ml-py \
    psutil packaging || exit 1
  export PYTHONPATH=$PYTHONPATH:$SITE
  "$PYTHON" -c 'import deepspeed; print("deepspeed", deepspeed.__version__)' || exit 1
fi

status=0
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2 began rc
  shift 2
  case ",$ONLY," in *",$name,"*) ;; *) return ;; esac
  began=$(date +%s)
  echo "=== $name (limit ${limit} s)"
  timeout "$limit" "$@"
  rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - began )) s"
  [ "$rc" = 0 ] || status=1
}
step losses 60 "$PYTHON" "$ROOT/perf/gpu_losses.py" --out "$RESULTS/gpu_losses.json"
step activations 90 "$PYTHON" "$ROOT/perf/activations.py" --out "$RESULTS/activations.json"
step trial-135m 150 "$PYTHON" "$ROOT/perf/gpu_trial.py" --tokenizer "$TOKENIZER" --size 135m --zero 3 \
  --out "$RESULTS/gpu_trial.json"
step trial-1b 150 "$PYTHON" "$ROOT/perf/gpu_trial.py" --tokenizer "$TOKENIZER" --size 1b --zero 3 \
  --out "$RESULTS/gpu_trial-1b.json"
exit $status
