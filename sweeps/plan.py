"""``unlearn plan SPEC``: a sweep's memory and time on paper, before a GPU is rented.

Notation: Ψ parameters, Ψ_l the largest layer's (the embedding), L layers, h hidden size, I MLP
width, V vocabulary, N workers of a trial, B micro-batch, T the longest padded sequence (the
longest forget / retain example cut at ``training.max_length``, or ``max_length`` when the data is
not local), e bytes per weight and activation (2 in bf16, 4 in fp32). All numbers are per GPU (per
worker process on CPU); at ZeRO-3 rank 0 also holds the evaluation copy (below it evaluates the
engine's own module, which holds the full weights).

Model states (weights, gradients, AdamW state); K = 12 with bf16 (fp32 master + m + v), 8 in fp32:
  ZeRO-0  (2e + K)·Ψ                  ZeRO-1  2e·Ψ + K·Ψ/N      (Rajbhandari et al., ZeRO, 2020)
  ZeRO-2  DeepSpeed's estimate_zero2_model_states_mem_needs: 2Ψ + 18Ψ/N (offload: 2Ψ)
  ZeRO-3  DeepSpeed's estimate_zero3_model_states_mem_needs: 4Ψ_l + 18Ψ/N (offload: 4Ψ_l)
  The estimators assume 16-bit weights: in fp32 we add 2Ψ (ZeRO-2) or 2Ψ/N (ZeRO-3). Their CPU
  number (zero_init=False: each worker loads the full fp32 model first) is the node's CPU need.
Activations of a micro-step with P passes with gradients (forget; retain when there is a retain
term) and R reference passes, for a Llama block with SDPA attention (the RMSNorms keep fp32 inputs):
  P·(B·T·(L·(8h + e·(8h + 4I)) + 4h + 2e·h) + L·B·T²·e) + B·T·V·(P·e + 8 + R·(4 + 4 + 8))
  (B, T, V) terms: per pass the logits, which the NLL and Unilogit losses keep and work on chunk
  by chunk (no fp32 copy); in backward one pass's fp32 gradient and its cast; per reference pass
  the fp32 log-softmax of the trained logits that the KL retain term keeps, and fp32 reference
  logits and soft labels (UnDIAL's loss works chunk by chunk too and keeps less: the reference
  logits and an fp32 gradient buffer, one buffer in fp32; counted as the KL term's, an upper
  bound). Checked on CPU against the bytes autograd saves (tests/test_plan.py). On an H200 (bf16,
  h 2048, I 7168, V 128256, B·T = 2048; ``perf/activations.py``): GA 2.81 GiB (the formula 3.30),
  GA + NLL and Unilogit + NLL 4.21 (4.64), UnDIAL + NLL 4.64 (8.55: its reference term is the upper
  bound above); with gradient checkpointing 2.02 (2.71), 3.42 (3.47) and 3.06 (7.38).
  With gradient checkpointing (``scaling.gradient_checkpointing``) a pass keeps each layer's input
  (the hidden state at every layer boundary) and, while backward recomputes it, one layer's full
  activations; its layer term becomes B·T·(L·e·h + 8h + e·(8h + 4I) + 4h + 2e·h) + B·T²·e (the
  (B, T, V) terms are unchanged).
Frozen reference (UnDIAL, KL retain): a full copy per worker, as ``sweeps/worker.py`` keeps it: eΨ
  on GPU (bf16 when training in bf16), 4Ψ on CPU; at ZeRO-3 partitioned over the N workers like the
  trained weights, eΨ/N plus the gather of the largest layer, eΨ_l.
LoRA (a method's ``lora`` section): Ψ_a adapter parameters train, counted by injecting the adapters
  into the model on the meta device. Model states: the frozen weights, eΨ on every rank (ZeRO-3: eΨ/N,
  none with offload), plus the states above for Ψ_a parameters (ZeRO-3 keeps its 4Ψ_l gather of the
  largest layer); CPU per node: the full fp32 load per worker, 4Ψ·1.5 each, plus the adapters'. No
  reference copy: the reference is the same model with its adapters disabled. Activations: as for
  full training (every layer is still backpropagated through; an upper bound when only some layers
  are adapted, the frozen others save less). A training pass costs 2/3 of a full one (no weight
  gradients of the frozen weights: 4Ψ of 6Ψ FLOPs per token); checkpoints hold the adapters only.
Evaluation (rank 0): at ZeRO-3 a full copy, eΨ on GPU (bf16 when training in bf16), 4Ψ on CPU (none
  below ZeRO-3: the engine's module is evaluated); while it scores, max(E·T·V·(e + 4),
  E·(T + new)·L·2·h_kv·e) for E = ``eval.batch_size``, in place of the training activations.
  Peak = states + reference + copy + max(training, evaluation) + reserve.
References (once per sweep, before any trial, in a Ray task placed like a trial worker, never on the
  driver's node): the target and the oracle (and the base model a target was prepared from, when
  it is a directory), eΨ each on GPU (4Ψ on CPU), plus one evaluation's working set and the reserve.

Time of a trial: ``forget tokens · epochs · c / (N · tokens/s per worker)`` with
  c = (s + g/3)·(1 + r·[retain term]) + (r·[KL retain] + [reference logits on forget]) / 3 (a forward
  is a third of a training step; r = retain / forget tokens; s = 1, or 2/3 under LoRA; g = 1 with
  gradient checkpointing, whose backward runs every layer's forward again: 4/3 of a step), divided by
  (1 − evaluation share), plus a fixed start and the model load and checkpoint writes
  (``STORAGE_BPS``). Sweep: trials · trial time /
  concurrency, concurrency = min(max_concurrent_trials, trials the cluster holds at once).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from sweeps.spec import RunSettings, SpecError, SweepSpec, load
from unlearn.validate import check

GIB = 2 ** 30
GPU_RESERVE = 3 * GIB  # CUDA context, NCCL buffers, DeepSpeed's reduce bucket (5e8 elements)
TRAIN_KEYS = ("zero_stage", "workers", "micro_batch", "epochs")  # the trial keys that change memory or time
METHOD_KEYS = ("retain", "retain_weight", "forget_weight")  # method fields that change the passes
LORA_STEP = 2 / 3  # a LoRA training pass against a full one: no weight gradients of the frozen weights
RECOMPUTE = 1 / 3  # what gradient checkpointing adds to a training pass: one more forward
CHAT_OVERHEAD = 30  # tokens a chat template adds to an example when no tokenizer is at hand
CHARS_PER_TOKEN = 4
# Throughput defaults (tokens/s of one worker = FLOP/s / 6Ψ) when perf/results has no measurement.
GPU_FLOPS = {True: 312e12, False: 19.5e12}  # A100 dense peak, bf16 / fp32 (cluster.yaml's GPUs)
MFU = 0.35  # assumed fraction of peak for ZeRO-3 training of a 7-8B model
CPU_FLOPS = 8.3e10  # per worker, measured here: SmolLM2-135M fp32, 103 tok/s per 1-thread worker
EVAL_SHARE = 0.4  # measured here: one demo trial, 20 s of evaluation in 51 s
START_S = 20.0  # measured here: worker group start, DeepSpeed init, first checkpoint (15-20 s)
STORAGE_BPS = 1e9  # assumed read / write speed of the shared storage (model load, checkpoints)

# Known shapes for names whose config cannot be read here (hub ids offline, paths on the cluster).
KNOWN = {
    "Llama-3-8B": (("llama3", "8b"), dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)),
    "Llama-2-7B": (("llama2", "7b"), dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)),
    "Llama-3.2-1B": (("llama32", "1b"), dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                             num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                             tie_word_embeddings=True)),
    "MUSE-News target (Llama-2-7B)": (("musenews",), None),
    "Zephyr-7B (Mistral-7B)": (("zephyr", "7b"), dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                                                    num_hidden_layers=32, num_attention_heads=32,
                                                    num_key_value_heads=8)),
    "SmolLM2-135M": (("smollm2",), dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                        tie_word_embeddings=True)),
}
ACCELERATOR_GIB = {"nvidia-a100-80gb": 80, "nvidia-tesla-a100": 40, "nvidia-h100-80gb": 80,
                   "nvidia-h100-mega-80gb": 80, "nvidia-h200-141gb": 141, "nvidia-l4": 24,
                   "nvidia-tesla-v100": 16, "nvidia-tesla-t4": 16}
MACHINE_GIB = {"a2-ultragpu-1g": 170, "a2-ultragpu-2g": 340, "a2-ultragpu-4g": 680, "a2-ultragpu-8g": 1360,
               "a2-highgpu-1g": 85, "a2-highgpu-2g": 170, "a2-highgpu-4g": 340, "a2-highgpu-8g": 680,
               "a3-highgpu-8g": 1872, "n2-standard-8": 32}


# ------------------------------------------------------------------------------------ the model

@dataclass(frozen=True)
class Shape:
    name: str
    params: int
    largest_layer: int
    layers: int
    hidden: int
    intermediate: int
    kv_hidden: int
    vocab: int
    directory: str | None = None  # a local model directory (its tokenizer counts the data)


def shape_of(config, name: str, directory: str | None = None) -> Shape:
    """Ψ and Ψ_l counted on the meta device (no weights), the rest read from ``config``."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = {id(p): p.numel() for p in model.parameters()}  # tied weights once
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return Shape(name, sum(params.values()), largest, text.num_hidden_layers, text.hidden_size,
                 getattr(text, "intermediate_size", None) or 4 * text.hidden_size,
                 (getattr(text, "num_key_value_heads", None) or heads) * head_dim, text.vocab_size, directory)


def model_shape(spec: SweepSpec) -> Shape:
    """The target's shape (:func:`model_config`)."""
    return shape_of(*model_config(spec))


def model_config(spec: SweepSpec) -> tuple:
    """(config, name, local directory or None) of the target: a local directory's ``config.json``, the
    tiny preset, the demo's SmolLM2 (its cached copy), a hub id in the local Hugging Face cache, or a
    known shape by name."""
    from transformers import AutoConfig, LlamaConfig

    field, name = ("model.base", spec.model.base) if spec.model.base else ("model.target", spec.model.target)
    if name == "tiny":
        from unlearn.models import TinyConfig

        t = TinyConfig()
        return LlamaConfig(vocab_size=t.vocab_size, hidden_size=t.hidden_size, num_hidden_layers=t.num_layers,
                           intermediate_size=t.intermediate_size, num_attention_heads=t.num_heads,
                           num_key_value_heads=t.num_kv_heads, tie_word_embeddings=t.tie_word_embeddings), "tiny", None
    if name == "smollm2":
        from benchmarks.common import default_cache

        name = str(default_cache() / "models" / "SmolLM2-135M-Instruct")
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return AutoConfig.from_pretrained(str(path), local_files_only=True), path.name, str(path)
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True), name, None
    except (OSError, ValueError):
        pass
    key = "".join(c for c in name.lower() if c.isalnum())
    for known, (patterns, config) in KNOWN.items():
        if all(p in key for p in patterns):
            return LlamaConfig(**(config or KNOWN["Llama-2-7B"][1])), known, None
    raise SpecError(f"{field} {name!r}: no config.json there and not a known shape "
                    f"({', '.join(KNOWN)}); give a local model directory")


def lora_params(config, lora) -> int:
    """Ψ_a: the parameters LoRA (``unlearn.lora.LoraConfig``) trains in a model of ``config``, counted
    by injecting the adapters on the meta device (no weights). Target modules that name nothing in
    the model are a ``ValidationError`` naming its linear layers."""
    import torch
    from transformers import AutoModelForCausalLM

    from unlearn.lora import apply, trainable

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return trainable(apply(model, lora))


def lora_configs(spec: SweepSpec, method: str) -> list:
    """The LoRA configs that change memory (rank, target modules) a method's trials take, worst case
    of a range (``[None]`` without a lora section)."""
    from sweeps.space import lora_section
    from unlearn.lora import LoraConfig

    section = lora_section(spec, method)
    if section is None:
        return [None]
    return [LoraConfig(r=r, target_modules=modules) for r in _options(section["r"])
            for modules in _options(section["target_modules"])]


def check_lora(spec: SweepSpec) -> None:
    """Every ``target_modules`` a method's lora section can take names modules of the target: one line
    naming the field and the model's linear layers otherwise. Skipped when the target's config is not
    at hand (a hub id out of the cache): the trial says so then."""
    from unlearn.validate import ValidationError

    if all(lora is None for method in spec.methods for lora in lora_configs(spec, method)):
        return
    try:
        config, name, _ = model_config(spec)
    except SpecError:
        return
    for method in spec.methods:
        for lora in lora_configs(spec, method):
            if lora is None:
                continue
            try:
                lora_params(config, lora)
            except ValidationError as error:
                raise SpecError(f"methods.{method}.lora.{str(error).replace('the model', name, 1)}") from None
            except Exception:  # a model the meta device cannot build here: the trial says what is wrong
                return


def check_fits(spec: SweepSpec, node: Node) -> None:
    """Refuse in one line, before anything runs, a sweep one of whose trials needs more memory than
    ``node`` (the cluster's largest) has by this plan's estimate: CPU memory per node always, GPU
    memory when the node says how much. Skipped when the target's config is not at hand (a hub id
    out of the cache): the trial says so then."""
    try:
        model_config(spec)
    except SpecError:
        return
    for row in plan(spec, node)["rows"]:
        memory = [why for why in row["why"] if "GiB" in why]  # the cluster's CPUs and GPUs: sweeps.cluster
        if memory:
            raise SpecError(f"methods.{row['method']}: a trial does not fit the cluster's largest node: "
                            f"{'; '.join(memory)} (unlearn plan shows the estimate)")


# ------------------------------------------------------------------------------------ memory

def reference(shape: Shape, full: int, stage: int, workers: int, scaling) -> int:
    """Bytes per GPU of the frozen reference model (module doc): whole below ZeRO-3, else its share
    and one gathered layer."""
    if stage < 3:
        return full
    e = 2 if scaling.bf16 and scaling.use_gpu else 4
    return math.ceil(full / workers) + e * shape.largest_layer


def model_states(shape: Shape, stage: int, workers: int, per_node: int, bf16: bool, offload: bool) -> tuple[int, int]:
    """(bytes per GPU, CPU bytes per node) of weights, gradients and AdamW state (module doc)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    psi, nodes = shape.params, math.ceil(workers / per_node)
    e, k = (2, 12) if bf16 else (4, 8)
    if stage == 2:
        cpu, gpu = estimate_zero2_model_states_mem_needs(psi, per_node, nodes, cpu_offload=offload)
        return gpu + (0 if bf16 else 2 * psi), cpu
    if stage == 3:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(psi, shape.largest_layer, per_node, nodes,
                                                            cpu_offload=offload, cpu_offload_params=offload,
                                                            zero_init=False)
        return gpu + (0 if bf16 or offload else 2 * psi // workers), cpu
    load = int(psi * 4 * per_node * 1.5)  # as the estimators count a full fp32 load per worker
    return ((2 * e + k) * psi if stage == 0 else 2 * e * psi + k * psi // workers), load


def activations(shape: Shape, batch: int, length: int, bf16: bool, passes: int = 1, ref_passes: int = 0,
                checkpointing: bool = False) -> int:
    """Bytes alive at the peak of one training micro-step: the passes with gradients (forget, and
    retain when there is a retain term) and the reference passes (module doc). ``checkpointing``:
    each layer keeps its input only, and one layer's activations are alive at a time."""
    e, h, tokens = (2 if bf16 else 4), shape.hidden, batch * length
    layer = tokens * (8 * h + e * (8 * h + 4 * shape.intermediate)) + batch * length ** 2 * e  # one layer's
    outside = tokens * (4 * h + 2 * e * h)  # embeddings and the final norm
    layers = shape.layers * tokens * e * h + layer if checkpointing else shape.layers * layer
    return passes * (layers + outside) + tokens * shape.vocab * (passes * e + 8 + ref_passes * (4 + 4 + 8))


def evaluation(shape: Shape, batch: int, length: int, new_tokens: int, bf16: bool) -> int:
    """Rank 0's working set while it evaluates: scoring logits or the generation cache."""
    e = 2 if bf16 else 4
    scoring = batch * length * shape.vocab * (e + 4)  # (E, T, V) logits and their fp32 copy
    cache = batch * (length + new_tokens) * shape.layers * 2 * shape.kv_hidden * e  # keys and values
    return max(scoring, cache)


# ------------------------------------------------------------------------------------ the node

@dataclass(frozen=True)
class Node:
    name: str
    gpus: int
    gpu_mem: float | None  # bytes per GPU
    cpus: float
    cpu_mem: float | None  # bytes
    count: int  # how many such nodes the cluster may start


def cluster_node(path: str | Path, name: str | None, use_gpu: bool) -> Node:
    """A node type of a Ray cluster launcher file: its resources, its accelerators' memory (GCP
    accelerator names) and its machine's memory (Ray's ``memory`` resource or known GCP types)."""
    import yaml

    try:
        types = yaml.safe_load(Path(path).read_text())["available_node_types"]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        raise SpecError(f"--cluster {str(path)!r}: not a Ray cluster file with available_node_types") from None
    if name is None:
        name = max(types, key=lambda n: (types[n].get("resources") or {}).get("GPU", 0) if use_gpu else 0)
    check(name in types, "--node", f"one of {', '.join(types)}", name)
    kind, config = types[name], types[name].get("node_config") or {}
    resources = kind.get("resources") or {}
    accelerators = config.get("guestAccelerators") or [{}]
    accelerator = accelerators[0].get("acceleratorType", "")
    gib = ACCELERATOR_GIB.get(accelerator)
    if gib is None and "gb" in accelerator:
        gib = int("".join(c for c in accelerator.rsplit("-", 1)[-1] if c.isdigit()) or 0) or None
    machine = MACHINE_GIB.get(config.get("machineType", ""))
    cpu_mem = resources.get("memory") or (machine * GIB if machine else None)
    return Node(name, int(resources.get("GPU", 0)), gib * GIB if gib else None, resources.get("CPU", 0),
                cpu_mem, int(kind.get("max_workers", 1) or 1))


def this_machine() -> Node:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Node("this machine", 0, None, os.cpu_count() or 1, memory, 1)


# ------------------------------------------------------------------------------------ the data

@dataclass(frozen=True)
class DataStats:
    forget_examples: int
    forget_tokens: int
    retain_ratio: float  # mean retain tokens / mean forget tokens
    longest: int  # longest forget or retain example, in tokens, cut at max_length
    counted_with: str


def data_stats(spec: SweepSpec, shape: Shape, benchmark) -> DataStats | None:
    """Token counts of the forget set (per unlearning target) and the longest example, when the data
    is local: a benchmark that can prepare its models builds its data locally (into a temporary
    directory), others are read from the cache where a sweep materialised them; ``None`` otherwise."""
    import tempfile

    from benchmarks.common import default_cache

    try:
        with tempfile.TemporaryDirectory() as tmp:
            key = getattr(benchmark, "key", None)
            cached = default_cache() / "benchmarks" / f"{benchmark.name}-{key()}" if key else None
            if cached and (cached / "COMPLETE").is_file():
                data = benchmark.read(cached)
            elif benchmark.declared.can_prepare:
                data = benchmark.materialize(tmp)
            else:
                return None
            forget, retain = data.forget_examples(), data.retain_examples()
    except (OSError, ValueError):  # a local source that is missing or malformed: the sweep says why
        return None
    length, how = _counter(spec, shape, data.chat)
    f, r = [length(x) for x in forget], [length(x) for x in retain] or [0]
    targets = max(1, len(getattr(data, "targets", None) or ()))
    ratio = (sum(r) / len(r)) / (sum(f) / len(f)) if f and sum(f) else 1.0
    return DataStats(round(len(f) / targets), round(sum(f) / targets), ratio, max(f + r), how)


def _counter(spec: SweepSpec, shape: Shape, chat: bool):
    """Tokens of one example as the collator encodes it (the target's tokenizer when it is local),
    else characters / 4 plus a chat template's ~30 tokens."""
    cap = spec.training.max_length
    if shape.directory:
        try:
            from transformers import AutoTokenizer

            from unlearn.data import Collator

            collate = Collator(AutoTokenizer.from_pretrained(shape.directory, local_files_only=True), cap, chat)
            return (lambda x: len(collate.encode(x)[0])), f"the tokenizer of {shape.name}"
        except (OSError, ValueError):
            pass
    extra = CHAT_OVERHEAD if chat else 1

    def guess(x: dict) -> int:
        chars = len(x.get("text", "")) + len(x.get("question", "")) + len(x.get("answer", ""))
        return min(cap, math.ceil(chars / CHARS_PER_TOKEN) + extra)
    return guess, f"characters / {CHARS_PER_TOKEN}" + (f" + {CHAT_OVERHEAD} (chat template)" if chat else "")


# ------------------------------------------------------------------------------------ throughput

def throughput(shape: Shape, use_gpu: bool, bf16: bool, results: Path) -> tuple[float, str]:
    """Training tokens/s of one worker (forget + retain positions through forward and backward):
    a ``perf/results/*.json`` with ``tokens_per_s`` measured on the same kind of device, of a model
    within 4x of this one's size when it records ``parameters`` (rescaled by 6Ψ FLOPs per token;
    smaller models are dominated by fixed costs), full runs before ``quick`` ones; else the
    default of the module doc."""
    found = []
    for path in sorted(results.glob("*.json")):
        try:
            row = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(row, dict) or not isinstance(row.get("tokens_per_s"), (int, float)):
            continue
        cuda = (row.get("machine") or {}).get("cuda") if isinstance(row.get("machine"), dict) else None
        device = str(row.get("device") or ("cuda" if cuda else "cpu")).lower()
        params = row.get("parameters")
        params = params if isinstance(params, (int, float)) and params > 0 else None
        if ("cuda" in device or "gpu" in device) == use_gpu and (params is None or 0.25 <= params / shape.params <= 4):
            found.append((bool(row.get("quick")), abs(math.log(params / shape.params)) if params else 0.0, path.name,
                          row["tokens_per_s"], params))
    if found:
        _, _, name, tokens_s, params = min(found)
        scale = params / shape.params if params else 1.0
        rescaled = f", rescaled from {params / 1e6:.0f}M parameters" if scale != 1.0 else ""
        return tokens_s * scale, f"{tokens_s:g} tok/s measured in {name}{rescaled}"
    flops = GPU_FLOPS[bf16] * MFU if use_gpu else CPU_FLOPS
    what = (f"assumed: {MFU:.0%} of an A100's {GPU_FLOPS[bf16] / 1e12:g} TFLOP/s ({'bf16' if bf16 else 'fp32'})"
            if use_gpu else f"assumed: {CPU_FLOPS / 1e9:g} GFLOP/s per CPU worker (SmolLM2-135M measured here)")
    return flops / (6 * shape.params), f"{what} / 6Ψ FLOPs per token; no measurement in perf/results fits"


# ------------------------------------------------------------------------------------ the trials

def _options(value) -> list:
    """Values a key takes: a grid's or choice's list, a range's upper end (the worst case)."""
    if isinstance(value, dict):
        kind, args = next(iter(value.items()))
        if kind in ("grid", "choice"):
            return list(args)
        return [args[1] - 1 if kind == "randint" else args[1]]
    return [value]


def trial_groups(spec: SweepSpec, subjects: int) -> list[dict]:
    """The trials of every method, grouped by what matters for memory and time: ZeRO stage,
    workers, micro-batch, epochs, which passes the method runs (retain term, reference model), and
    LoRA's rank and target modules (``lora``: their mapping, ``None`` when every weight trains)."""
    from sweeps.space import grid_size
    from unlearn import methods

    groups: dict[tuple, dict] = {}
    defaults = RunSettings.defaults(spec)
    for method in spec.methods:
        space, fields = spec.space(method), [f.name for f in dataclasses.fields(methods.get(method))]
        fixed = {k: v for k, v in space.items() if k in fields and not isinstance(v, dict) and k not in METHOD_KEYS}
        keys = [k for k in TRAIN_KEYS + METHOD_KEYS if k in space]
        combos = [dict(zip(keys, values)) for values in itertools.product(*(_options(space[k]) for k in keys))]
        loras = lora_configs(spec, method)
        count = grid_size(spec, method) * subjects / (len(combos) * len(loras))
        for combo, lora in itertools.product(combos, loras):
            config = methods.make(method, dict(fixed, **{k: v for k, v in combo.items() if k in METHOD_KEYS}))
            run = {k: combo.get(k, defaults[k]) for k in TRAIN_KEYS}
            passes = {"retain": config.uses_retain, "kl_retain": config.uses_retain and config.retain == "kl",
                      "ref_forget": config.needs_ref_forget_logits, "ref_model": config.needs_ref_model,
                      "preferred": len(config.forget_views([])) > 1}  # IdkDPO: a second forget batch
            adapters = None if lora is None else {"r": lora.r, "target_modules": lora.target_modules}
            key = (method, *run.values(), *passes.values(), json.dumps(adapters))
            label = " ".join([method] + [f"{k}={v}" for k, v in combo.items()]
                             + ([] if lora is None else [f"lora r={lora.r}" + _modules(lora.target_modules)]))
            group = groups.setdefault(key, dict(label=label, method=method, trials=0.0, **run, **passes, lora=adapters))
            group["trials"] += count
    return list(groups.values())


def _modules(modules) -> str:
    """Target modules in a label: nothing for LoRA's default, else their names."""
    from unlearn.lora import ALL_LINEAR

    return "" if modules == ALL_LINEAR else " " + ",".join(modules)


def lora_states(shape: Shape, adapters: int, stage: int, workers: int, per_node: int, bf16: bool,
                offload: bool) -> tuple[int, int]:
    """(bytes per GPU, CPU bytes per node) of a LoRA trial's model states (module doc): the frozen
    weights and the weights, gradients and AdamW state of ``adapters`` parameters."""
    e, psi = (2 if bf16 else 4), shape.params
    gpu, cpu = model_states(dataclasses.replace(shape, params=adapters), stage, workers, per_node, bf16, offload)
    frozen = e * psi if stage < 3 else 0 if offload else e * psi // workers
    return gpu + frozen, cpu + int(psi * 4 * per_node * 1.5)


# ------------------------------------------------------------------------------------ the plan

def plan(spec: SweepSpec, node: Node, *, results: Path = Path("perf/results"), eval_share: float = EVAL_SHARE,
         forget_tokens: int | None = None) -> dict:
    """Memory per GPU (per worker on CPU) and time of every trial group, and of the sweep."""
    scaling, training = spec.scaling, spec.training
    config, name, directory = model_config(spec)
    shape = shape_of(config, name, directory)
    benchmark = spec.benchmark.build(spec.benchmark.variants()[0][0])  # a grid's first point stands for the others
    targets = getattr(benchmark, "targets", None)  # RWKU: every configuration runs once per target
    subjects = targets if isinstance(targets, int) else len(targets) if isinstance(targets, (list, tuple)) else 1
    stats = data_stats(spec, shape, benchmark)
    length = min(training.max_length, stats.longest) if stats else training.max_length
    if forget_tokens is None and stats:
        forget_tokens = stats.forget_tokens
    tokens_s, speed_note = throughput(shape, scaling.use_gpu, scaling.bf16, Path(results))
    context = dict(shape=shape, node=node, length=length, tokens_s=tokens_s, eval_share=eval_share,
                   forget_tokens=forget_tokens, retain_ratio=stats.retain_ratio if stats else 1.0)
    groups = trial_groups(spec, subjects)
    counted: dict[str, int] = {}
    for g in groups:  # Ψ_a of each LoRA config, counted once
        if g["lora"] is None:
            g["trainable_params"] = shape.params
            continue
        key = json.dumps(g["lora"])
        if key not in counted:
            from unlearn.lora import LoraConfig
            from unlearn.validate import ValidationError

            try:
                counted[key] = lora_params(config, LoraConfig(**g["lora"]))
            except ValidationError as error:
                raise SpecError(f"methods.{g['method']}.lora.{str(error).replace('the model', name, 1)}") from None
        g["trainable_params"] = counted[key]
    rows = [_row(spec, g, **context) for g in groups]
    refs = reference_step(spec, shape, length)
    concurrency = min(spec.max_concurrent_trials, _capacity(spec, node, max(r["workers"] for r in rows)))
    known = forget_tokens is not None
    busy_hours = sum(r["trials"] * r["trial_hours"] for r in rows) if known else None
    return {
        "spec": spec.name, "model": dataclasses.asdict(shape), "node": dataclasses.asdict(node),
        "device": "gpu" if scaling.use_gpu else "cpu", "bf16": scaling.bf16, "offload": scaling.offload,
        "gradient_checkpointing": scaling.gradient_checkpointing,
        "seq_len": length, "max_length": training.max_length,
        "data": dataclasses.asdict(stats) if stats else None, "forget_tokens": forget_tokens,
        "tokens_per_s_per_worker": tokens_s, "throughput_source": speed_note, "eval_share": eval_share,
        "trials": sum(r["trials"] for r in rows), "concurrency": concurrency,
        "sweep_hours": busy_hours / concurrency if known else None,
        "gpu_hours": sum(r["trials"] * r["trial_hours"] * r["workers"] * scaling.gpus_per_worker for r in rows)
        if known and scaling.use_gpu else None,
        "rows": rows, "references_gib": refs / GIB,
        "references_fit": None if scaling.use_gpu and node.gpu_mem is None else
        refs <= (node.gpu_mem if scaling.use_gpu else node.cpu_mem or math.inf),
    }


def reference_step(spec: SweepSpec, shape: Shape, length: int) -> int:
    """Bytes of the references' step (module doc): its models in the trial's dtype on its device,
    one evaluation and the reserve."""
    scaling = spec.scaling
    base = spec.model.base
    models = 1 + bool(base or spec.model.oracle) + bool(base and base != "tiny")
    full = ((2 if scaling.bf16 else 4) if scaling.use_gpu else 4) * shape.params
    working = evaluation(shape, spec.eval.batch_size, length, spec.eval.max_new_tokens, scaling.bf16)
    return models * full + working + (GPU_RESERVE if scaling.use_gpu else 0)


def _row(spec: SweepSpec, g: dict, *, shape: Shape, node: Node, length: int, tokens_s: float, eval_share: float,
         forget_tokens: int | None, retain_ratio: float) -> dict:
    """One trial group: memory of rank 0 and of the other ranks, whether it fits, hours per trial."""
    scaling = spec.scaling
    e, psi, workers = (2 if scaling.bf16 else 4), shape.params, g["workers"]
    per_node = min(workers, node.gpus) if scaling.use_gpu and node.gpus else workers
    offload = scaling.offload and scaling.use_gpu  # on CPU, offloading moves nothing
    lora, adapters = g["lora"] is not None, g["trainable_params"]
    if lora:
        states, cpu_node = lora_states(shape, adapters, g["zero_stage"], workers, per_node, scaling.bf16, offload)
    else:
        states, cpu_node = model_states(shape, g["zero_stage"], workers, per_node, scaling.bf16, offload)
    def step(batch: int, checkpointing: bool = scaling.gradient_checkpointing) -> int:
        return activations(shape, batch, length, scaling.bf16, 1 + g["retain"] + g["preferred"],
                           g["ref_forget"] + g["kl_retain"], checkpointing)

    train = step(g["micro_batch"])
    full = (e if scaling.use_gpu else 4) * psi  # one whole model in the worker's dtype
    ref = reference(shape, full, g["zero_stage"], workers, scaling) if g["ref_model"] and not lora else 0
    copy = full if g["zero_stage"] == 3 else 0  # below ZeRO-3 rank 0 evaluates the engine's own module
    evaluating = evaluation(shape, spec.eval.batch_size, length, spec.eval.max_new_tokens, scaling.bf16)
    reserve = GPU_RESERVE if scaling.use_gpu else 0
    others = states + ref + train + reserve
    rank0 = states + ref + copy + max(train, evaluating) + reserve
    why = []
    if scaling.use_gpu:
        nodes = math.ceil(workers * scaling.gpus_per_worker / node.gpus) if node.gpus else math.inf
        if node.gpu_mem is not None and rank0 > node.gpu_mem:
            fixed = states + ref + copy + reserve
            smaller = [b for b in range(g["micro_batch"] - 1, 0, -1)
                       if fixed + max(evaluating, step(b)) <= node.gpu_mem]
            checkpointed = not scaling.gradient_checkpointing and \
                fixed + max(evaluating, step(g["micro_batch"], True)) <= node.gpu_mem
            why.append(f"rank 0 needs {rank0 / GIB:.1f} GiB, the others {others / GIB:.1f}, of "
                       f"{node.gpu_mem / GIB:g}; " + (f"micro_batch {smaller[0]} fits" if smaller
                                                      else "no smaller micro_batch fits")
                       + ("; with scaling.gradient_checkpointing: true it fits" if checkpointed else ""))
        if not node.gpus:
            why.append(f"node type {node.name} has no GPUs")
        elif nodes > node.count:
            why.append(f"{workers} workers need {nodes} nodes of {node.gpus} GPUs, the cluster has {node.count}")
    else:
        nodes, cpu_node = 1, rank0 + (workers - 1) * others
    if node.cpu_mem is not None and cpu_node > node.cpu_mem:
        why.append(f"{cpu_node / GIB:.0f} GiB of CPU memory per node, the node has {node.cpu_mem / GIB:.0f}")
    fits = None if scaling.use_gpu and node.gpu_mem is None and not why else not why
    hours, parts = None, {}
    if forget_tokens is not None:
        per_pass = (LORA_STEP if lora else 1) + (RECOMPUTE if scaling.gradient_checkpointing else 0)
        passes = per_pass * (1 + g["preferred"] + retain_ratio * g["retain"])
        cost = passes + (retain_ratio * g["kl_retain"] + g["ref_forget"]) / 3
        train_s = forget_tokens * g["epochs"] * cost / (workers * tokens_s)
        saved = adapters if lora else psi  # checkpoints and the final model: the adapters only under LoRA
        io_s = (4 * psi + ((g["epochs"] - 1) * (e + 12) + e) * saved) / STORAGE_BPS  # load, checkpoints, final
        parts = dict(train_s=train_s, eval_s=train_s * eval_share / (1 - eval_share), start_s=START_S, io_s=io_s)
        hours = sum(parts.values()) / 3600
    return dict(g, states_gib=states / GIB, reference_gib=ref / GIB, activations_gib=train / GIB,
                eval_copy_gib=copy / GIB, eval_working_gib=evaluating / GIB, reserve_gib=reserve / GIB,
                rank0_gib=rank0 / GIB, other_ranks_gib=others / GIB, cpu_per_node_gib=cpu_node / GIB,
                nodes_per_trial=nodes, fits=fits, why=why, trial_hours=hours, trial_seconds=parts)


def _capacity(spec: SweepSpec, node: Node, workers: int) -> int:
    """Trials the cluster runs at once: whole nodes per trial, or trials per node by GPUs and CPUs
    (without ``cpus_per_worker`` a trial's workers share all of a node's CPUs, as sweeps.cluster does)."""
    scaling = spec.scaling
    if not scaling.use_gpu and not scaling.cpus_per_worker:
        return node.count
    nodes, per_node = 1, None
    if scaling.use_gpu and node.gpus:
        gpus = workers * scaling.gpus_per_worker
        nodes = math.ceil(gpus / node.gpus)
        per_node = int(node.gpus // gpus) if nodes == 1 else 1
    if scaling.cpus_per_worker:
        by_cpus = int(node.cpus // (scaling.trial_cpus + workers * scaling.cpus_per_worker))
        per_node = by_cpus if per_node is None else min(per_node, by_cpus)
    return max(1, node.count // nodes) * max(1, per_node or 1)


# ------------------------------------------------------------------------------------ output

FITS = {True: "yes", False: "NO", None: "?"}


def table(p: dict) -> str:
    m, node = p["model"], p["node"]
    unit = "GPU" if p["device"] == "gpu" else "worker"
    if p["device"] == "cpu":
        capacity = f"{node['cpus']:g} CPUs"
    else:
        memory = f" × {node['gpu_mem'] / GIB:g} GiB" if node["gpu_mem"] else ""
        capacity = f"{node['gpus']}{memory} GPUs"
    cpu_mem = f"{node['cpu_mem'] / GIB:.0f} GiB" if node["cpu_mem"] else "unknown"
    data = p["data"]
    lines = [
        f"plan for {p['spec']}: {m['name']}, {m['params'] / 1e9:.3g}B parameters (largest layer "
        f"{m['largest_layer'] / 1e6:.0f}M), {'bf16' if p['bf16'] else 'fp32'}{', offload' if p['offload'] else ''}"
        f"{', gradient checkpointing' if p['gradient_checkpointing'] else ''}",
        f"node {node['name']}: {capacity}, {cpu_mem} CPU memory, up to {node['count']} node(s)",
        f"sequence length T = {p['seq_len']} tokens: "
        + (f"the longest forget / retain example (counted with {data['counted_with']})" if data else
           "max_length (the data is not local)"),
        "",
        f"{'trials':<34}{'n':>4} {'ZeRO':>4} {'wk':>3} {'B':>3} {'states':>7} {'ref':>6} {'act':>6} {'eval':>6} "
        f"{'rank0':>7} {'others':>7} {'CPU/node':>9} {'fits':>5} {'h/trial':>8}",
    ]
    for r in p["rows"]:
        hours = f"{r['trial_hours']:.2f}" if r["trial_hours"] is not None else "?"
        lines.append(
            f"{r['label']:<34}{r['trials']:>4g} {r['zero_stage']:>4} {r['workers']:>3} {r['micro_batch']:>3} "
            f"{r['states_gib']:>7.1f} {r['reference_gib']:>6.1f} {r['activations_gib']:>6.1f} "
            f"{r['eval_copy_gib']:>6.1f} {r['rank0_gib']:>7.1f} {r['other_ranks_gib']:>7.1f} "
            f"{r['cpu_per_node_gib']:>9.1f} {FITS[r['fits']]:>5} {hours:>8}")
    reserve = GPU_RESERVE // GIB if p["device"] == "gpu" else 0
    lines += ["", f"GiB per {unit}; rank0 = states + ref + act + eval copy (+ {reserve} GiB reserve), its evaluation "
              f"working set {max(r['eval_working_gib'] for r in p['rows']):.1f} GiB replaces act while it evaluates"]
    if p["forget_tokens"] is not None:
        lines.append(f"forget set: {p['forget_tokens']:,} tokens per trial"
                     + (f" ({data['forget_examples']} examples)" if data else "") + " × epochs")
    lines.append(f"throughput: {p['tokens_per_s_per_worker']:,.0f} tokens/s per worker ({p['throughput_source']})")
    if p["sweep_hours"] is not None:
        gpu = f", {p['gpu_hours']:.1f} GPU-hours" if p["gpu_hours"] is not None else ""
        lines.append(f"sweep: {p['trials']:g} trials, {p['concurrency']} at once, evaluation {p['eval_share']:.0%} "
                     f"of a trial: about {p['sweep_hours']:.1f} h{gpu}")
    else:
        lines.append(f"sweep: {p['trials']:g} trials, {p['concurrency']} at once; time unknown: the forget set is not "
                     "local (give --forget-tokens N)")
    where = "one GPU" if p["device"] == "gpu" else "one worker's CPUs"
    lines.append(f"references: {p['references_gib']:.1f} GiB on {where} ({FITS[p['references_fit']]}), "
                 "in a Ray task placed like a trial worker, not on the driver's node")
    fits = [r for r in p["rows"] if r["fits"]]
    for r in p["rows"]:
        if r["lora"] is not None:
            lines.append(f"{r['label']}: LoRA trains {r['trainable_params'] / 1e6:.3g}M parameters "
                         f"({r['trainable_params'] / m['params']:.2%}); its reference is the same model, adapters off")
    lines.append(f"fits: {len(fits)} of {len(p['rows'])} trial groups fit one trial on {node['name']}")
    lines += [f"  {r['label']}: {'; '.join(r['why'])}" for r in p["rows"] if r["why"]]
    return "\n".join(lines)


def main(args) -> int:
    """The ``unlearn plan`` command."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # only DeepSpeed's estimators are used: no device probe
    try:
        spec = load(args.spec)
        if args.node or spec.scaling.use_gpu:
            node = cluster_node(args.cluster, args.node, spec.scaling.use_gpu)
        else:
            node = this_machine()
        overrides = {"gpu_mem": args.gpu_mem and args.gpu_mem * GIB, "gpus": args.gpus,
                     "cpu_mem": args.cpu_mem and args.cpu_mem * GIB, "count": args.nodes}
        node = dataclasses.replace(node, **{k: v for k, v in overrides.items() if v})
        check(0 <= args.eval_share < 1, "--eval-share", "in [0, 1)", args.eval_share)
        result = plan(spec, node, results=Path(args.results), eval_share=args.eval_share,
                      forget_tokens=args.forget_tokens)
    except SpecError as error:
        raise SystemExit(f"unlearn: error: {error}") from None
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0
