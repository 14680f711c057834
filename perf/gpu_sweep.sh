#!/usr/bin/env bash
# A one-trial sweep of SmolLM2-135M-Instruct on one GPU worker (DeepSpeed ZeRO-2, bf16), for a
# machine with a network and a GPU: writes a small spec to a temporary directory, runs
# `unlearn sweep` on it and then `unlearn report`, and prints the wall time of each. The first run
# downloads SmolLM2 from the hub and prepares its target and oracle (cached afterwards).
# Writes perf/results/gpu_sweep.json (gpu_sweep-quick.json with --quick).
#
#   perf/gpu_sweep.sh            # the GPU run
#   perf/gpu_sweep.sh --quick    # the tiny preset on one CPU worker: a smoke check of this script
#   perf/gpu_sweep.sh --keep     # keep the temporary directory (runs, report.html)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${VENV:-$ROOT/.venv}/bin
PYTHON=$BIN/python
UNLEARN=$BIN/unlearn
[ -x "$UNLEARN" ] || { PYTHON=python; UNLEARN=unlearn; }
QUICK=0
KEEP=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--quick] [--keep]" >&2; exit 2 ;;
  esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-sweep-XXXXXX")
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT

if [ "$QUICK" = 1 ]; then
  NAME=gpu-sweep-quick
  cat > "$WORK/spec.yaml" <<EOF
name: $NAME
model:
  base: tiny
  prepare: {lr: 3.0e-3, max_epochs: 40, micro_batch: 8, stop_recall: 0.95}
benchmark:
  name: synthetic
  params: {seed: 1, people: 20, forget_fraction: 0.2, facts: 4, bios: 3}
methods:
  unilogit: {lr: 1.0e-3, retain: nll}
training: {epochs: 1, micro_batch: 4, grad_accum: 1, seeds: [0]}
eval: {every_epoch: [], final: [generation], max_probes: 2, max_new_tokens: 8}
scaling: {workers: 1, use_gpu: false, zero_stage: 2, bf16: false}
max_concurrent_trials: 1
storage: $WORK/runs
EOF
else
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  NAME=gpu-sweep
  cat > "$WORK/spec.yaml" <<EOF
name: $NAME
model:
  base: smollm2
  prepare: {lr: 3.0e-4, max_epochs: 6, micro_batch: 8, stop_recall: 0.85}
benchmark:
  name: synthetic
  params: {seed: 0, people: 12, forget_fraction: 0.2, facts: 4, bios: 2}
methods:
  unilogit: {lr: 1.0e-4, retain: nll}
training: {epochs: 1, micro_batch: 8, grad_accum: 1, seeds: [0], max_length: 256}
eval:
  every_epoch: [generation, kl]
  final: [generation, verbmem, mia, kl]
  batch_size: 32
  max_new_tokens: 24
scaling: {workers: 1, use_gpu: true, gpus_per_worker: 1, zero_stage: 2, bf16: true}
max_concurrent_trials: 1
storage: $WORK/runs
EOF
fi

now() { date +%s.%N; }
START=$(now)
set +e
"$UNLEARN" sweep "$WORK/spec.yaml" 2>&1 | tee "$WORK/sweep.log"
SWEEP_RC=${PIPESTATUS[0]}
MID=$(now)
"$UNLEARN" report "$WORK/runs/$NAME" -o "$WORK/report.html" 2>&1 | tee "$WORK/report.log"
REPORT_RC=${PIPESTATUS[0]}
END=$(now)
set -e

SWEEP_S=$(awk "BEGIN {printf \"%.1f\", $MID - $START}")
REPORT_S=$(awk "BEGIN {printf \"%.1f\", $END - $MID}")
TOTAL_S=$(awk "BEGIN {printf \"%.1f\", $END - $START}")
echo "wall time: sweep ${SWEEP_S} s (exit $SWEEP_RC), report ${REPORT_S} s (exit $REPORT_RC), total ${TOTAL_S} s"
[ "$KEEP" = 1 ] && echo "kept: $WORK (spec.yaml, runs/, report.html)"

OUT=$ROOT/perf/results/$([ "$QUICK" = 1 ] && echo gpu_sweep-quick.json || echo gpu_sweep.json)
QUICK=$QUICK SWEEP_S=$SWEEP_S REPORT_S=$REPORT_S TOTAL_S=$TOTAL_S SWEEP_RC=$SWEEP_RC REPORT_RC=$REPORT_RC \
SPEC=$WORK/spec.yaml LOG=$WORK/sweep.log OUT=$OUT "$PYTHON" - <<'EOF'
import datetime, json, os, platform, re

import torch

env = os.environ
counts = re.findall(r"(\d+) finished, (\d+) failed", open(env["LOG"]).read())
trials = {"finished": sum(int(a) for a, _ in counts), "failed": sum(int(b) for _, b in counts)}
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
result = {
    "benchmark": "gpu_sweep", "quick": env["QUICK"] == "1",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cpu_count": os.cpu_count(), "gpus": gpus, "torch": torch.__version__,
                "python": platform.python_version(), "platform": platform.platform()},
    "spec": open(env["SPEC"]).read(),
    "wall_s": {"sweep": float(env["SWEEP_S"]), "report": float(env["REPORT_S"]), "total": float(env["TOTAL_S"])},
    "exit_codes": {"sweep": int(env["SWEEP_RC"]), "report": int(env["REPORT_RC"])},
    "trials": trials,
}
os.makedirs(os.path.dirname(env["OUT"]), exist_ok=True)
with open(env["OUT"], "w") as f:
    f.write(json.dumps(result, indent=2) + "\n")
print(f"trials: {trials['finished']} finished, {trials['failed']} failed")
print(f"wrote {env['OUT']}")
raise SystemExit(1 if trials["failed"] or not trials["finished"] else 0)
EOF
[ "$SWEEP_RC" = 0 ] && [ "$REPORT_RC" = 0 ]
