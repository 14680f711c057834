"""The sweep spec: frozen dataclasses validated on construction; YAML only at the edge, loaded
strictly (an unknown key is an error naming the key and the allowed ones).

A method's search space maps hyper-parameters (the method's own fields and the trial keys below)
to a fixed value or a YAML search primitive (``{grid: [...]}``, ``{choice: [...]}``,
``{loguniform: [a, b]}``, ``{uniform: [a, b]}``, ``{randint: [a, b]}``); the Python API also accepts
Ray Tune domain objects directly. Its ``lora`` section, when given, trains LoRA adapters instead of
every weight (``unlearn.lora.LoraConfig``: ``r``, ``alpha``, ``dropout``, ``target_modules``, each a
value or a primitive).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import PARTS
from sweeps.tracking import Tracking
from unlearn.schedule import SCHEDULES
from unlearn.validate import ValidationError, check_int, check_number, fail, is_number

PRIMITIVES = ("grid", "choice", "uniform", "loguniform", "randint")
ALGORITHMS = ("grid", "random", "optuna")
RESERVED = ("seed", "subject")  # hyper-parameters the sweep itself sets
LORA = "lora"  # a method space's LoRA section (unlearn.lora.LoraConfig's fields)

SpecError = ValidationError  # a malformed spec; the CLI prints its one-line message


@dataclass(frozen=True)
class ModelSpec:
    """Either ``base`` (prepared into a target and an oracle with ``prepare``) or ``target`` (a
    model directory or hub id) with, where the benchmark has one, its retrained ``oracle``: one
    model, or one per grid point of the benchmark (``{"split=forget01": ..., ...}``, named as
    :func:`variant_name` names them) when the grid changes what is forgotten."""

    base: str | None = None
    prepare: dict = field(default_factory=dict)
    target: str | None = None
    oracle: str | dict | None = None

    def __post_init__(self):
        if bool(self.base) == bool(self.target):
            fail("model", "either {base: ...} or {target: ..., oracle: ...}", dataclasses.asdict(self))
        if self.oracle is not None and not (isinstance(self.oracle, str) and self.oracle) and not (
                isinstance(self.oracle, dict) and self.oracle
                and all(isinstance(v, str) and v for v in self.oracle.values())):
            fail("model.oracle", "a model directory or hub id, or a mapping of grid point to one", self.oracle)
        if self.prepare and not self.base:
            fail("model.prepare", "given only with model.base", self.prepare)
        from benchmarks.prepare import Recipe

        allowed = [f.name for f in dataclasses.fields(Recipe)]
        for key in self.prepare:
            if key not in allowed:
                fail(f"model.prepare.{key}", f"one of {', '.join(allowed)} (unknown key)", key)
        try:
            Recipe(**self.prepare)
        except ValueError as error:
            raise SpecError(f"model.prepare: {error}") from None


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark and its parameters; a parameter given as ``{grid: [...]}`` is a sweep dimension:
    every value (every combination, with several) gets its own data, references and, when the
    models are prepared, its own target and oracle."""

    name: str = "synthetic"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.params, dict):
            fail("benchmark.params", "a mapping of parameter to value or {grid: [...]}", self.params)
        for key, value in self.params.items():
            if isinstance(value, dict) and "grid" in value:
                if len(value) != 1 or not isinstance(value["grid"], list) or not value["grid"]:
                    fail(f"benchmark.params.{key}", "{grid: [value, ...]} with a non-empty list", value)
                if len({json.dumps(v, sort_keys=True, default=str) for v in value["grid"]}) != len(value["grid"]):
                    fail(f"benchmark.params.{key}.grid", "a list of distinct values", value["grid"])
        for label, _ in self.variants():
            try:
                self.build(label)
            except ValueError as error:
                raise SpecError(f"benchmark: {error}") from None

    def grid(self) -> dict:
        """The parameters swept as a grid: name -> values."""
        return {k: list(v["grid"]) for k, v in self.params.items() if isinstance(v, dict) and "grid" in v}

    def variants(self) -> list[tuple[dict, dict]]:
        """(label, params) per grid point: ``label`` holds the gridded parameters' values (empty
        without a grid), ``params`` every parameter."""
        grid = self.grid()
        fixed = {k: v for k, v in self.params.items() if k not in grid}
        out = []
        for values in itertools.product(*grid.values()):
            label = dict(zip(grid, values))
            out.append((label, {**fixed, **label}))
        return out

    def build(self, label: dict | None = None):
        """The benchmark of one grid point (its label), or of the fixed parameters without a grid."""
        import benchmarks

        label = label or {}
        params = next((p for lab, p in self.variants() if lab == label), None) if self.grid() else dict(self.params)
        if params is None:
            raise SpecError(f"benchmark: no grid point {label!r}")
        return benchmarks.get(self.name, **params)


def variant_name(label: dict) -> str:
    """How a grid point is named to a user: ``split=forget01`` (``, ``-joined with several)."""
    return ", ".join(f"{k}={v}" for k, v in label.items())


def variant_key(label: dict) -> str:
    """The text that names a grid point (and an unlearning target) in the references file."""
    return json.dumps(label, sort_keys=True, default=str)


@dataclass(frozen=True)
class Training:
    epochs: int = 2
    micro_batch: int = 4
    grad_accum: int = 1
    schedule: str = "constant"
    warmup_steps: int = 0
    seeds: tuple = (0,)
    max_length: int = 256
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    group_by_length: bool = False  # batches of examples of similar length (less padding)

    def __post_init__(self):
        check_int("training.epochs", self.epochs, 1)
        check_int("training.micro_batch", self.micro_batch, 1)
        check_int("training.grad_accum", self.grad_accum, 1)
        check_int("training.warmup_steps", self.warmup_steps, 0)
        check_int("training.max_length", self.max_length, 8)
        check_number("training.weight_decay", self.weight_decay)
        check_number("training.grad_clip", self.grad_clip)
        if not isinstance(self.group_by_length, bool):
            fail("training.group_by_length", "true or false", self.group_by_length)
        if self.schedule not in SCHEDULES:
            fail("training.schedule", f"one of {', '.join(SCHEDULES)}", self.schedule)
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            fail("training.seeds", "a non-empty list of integers", self.seeds)
        for seed in self.seeds:
            check_int("training.seeds[]", seed, 0)
        object.__setattr__(self, "seeds", tuple(self.seeds))


@dataclass(frozen=True)
class EvalSpec:
    every_epoch: tuple = ("generation", "kl")
    final: tuple = ("generation", "verbmem", "mia", "kl")
    max_probes: int | None = None
    batch_size: int = 16
    max_new_tokens: int = 24
    verbatim_tokens: int = 48
    kl_max_tokens: int = 2048
    autocast: bool = False  # bf16 autocast of the evaluation's forward passes on CPU
    relearn: dict | None = None  # {examples, steps, lr}: a relearning attack after the final epoch (sweeps.relearn)

    def __post_init__(self):
        if self.relearn is not None:
            from unlearn.relearn import RelearnConfig

            object.__setattr__(self, "relearn", RelearnConfig.of(self.relearn))
        if not isinstance(self.autocast, bool):
            fail("eval.autocast", "true or false", self.autocast)
        for name in ("every_epoch", "final"):
            parts = getattr(self, name)
            if not isinstance(parts, (list, tuple)):
                fail(f"eval.{name}", f"a list of {', '.join(PARTS)}", parts)
            for part in parts:
                if part not in PARTS:
                    fail(f"eval.{name}[]", f"one of {', '.join(PARTS)}", part)
            object.__setattr__(self, name, tuple(parts))
        if self.max_probes is not None:
            check_int("eval.max_probes", self.max_probes, 1)
        for name in ("batch_size", "max_new_tokens", "verbatim_tokens", "kl_max_tokens"):
            check_int(f"eval.{name}", getattr(self, name), 1)


# The least CPU share a worker gets (sweeps.cluster.bundles): below half a core its threads mostly
# wait for one, and a trial that would run so thin is refused instead.
MIN_WORKER_CPUS = 0.5


@dataclass(frozen=True)
class Scaling:
    workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float | None = None  # None: share the node's CPUs between the workers
    gpus_per_worker: float = 1.0  # with use_gpu, one: each worker drives one GPU
    zero_stage: int = 2
    bf16: bool = False
    offload: bool = False
    trial_cpus: float = 0.1  # the function trial that drives the worker group
    gradient_checkpointing: bool = False  # recompute each layer's activations in backward

    def __post_init__(self):
        check_int("scaling.workers", self.workers, 1)
        check_int("scaling.zero_stage", self.zero_stage, 0, 3)
        if self.cpus_per_worker is not None:
            check_number("scaling.cpus_per_worker", self.cpus_per_worker, MIN_WORKER_CPUS)
        check_number("scaling.gpus_per_worker", self.gpus_per_worker, strict=True)
        check_number("scaling.trial_cpus", self.trial_cpus, strict=True)
        for name in ("use_gpu", "bf16", "offload", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                fail(f"scaling.{name}", "true or false", getattr(self, name))
        if self.use_gpu and self.gpus_per_worker != 1:
            fail("scaling.gpus_per_worker", "1 with use_gpu (each worker drives one GPU)", self.gpus_per_worker)
        if self.offload and self.zero_stage < 2:
            fail("scaling.offload", "used with zero_stage 2 or 3", self.offload)


@dataclass(frozen=True)
class Objective:
    """Scalar a non-grid search optimises: ``metric`` toward ``mode``, counted only when every
    ``subject_to`` bound holds (``{metric: {max: x}}`` or ``{metric: {min: x}}``)."""

    metric: str
    mode: str = "max"
    subject_to: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            fail("search.objective.mode", "max or min", self.mode)
        for name, bound in self.subject_to.items():
            if not isinstance(bound, dict) or len(bound) != 1 or next(iter(bound)) not in ("max", "min"):
                fail(f"search.objective.subject_to.{name}", "{max: number} or {min: number}", bound)


@dataclass(frozen=True)
class Search:
    """How the space is explored. ``objectives`` (Optuna only): several metrics searched at once for
    their Pareto front; with Optuna and neither ``objective`` nor ``objectives`` they are the
    benchmark's first declared front pair (``sweeps.search.resolve``)."""

    algorithm: str = "grid"
    samples: int = 1
    asha: dict | None = None  # {grace_period: 1, reduction_factor: 2}
    objective: Objective | None = None
    objectives: tuple = ()  # (Objective, ...)
    sampler: str = "tpe"  # Optuna's sampler: tpe (multivariate TPE) or nsga2
    seed: int = 0  # the sampler's seed

    def __post_init__(self):
        from sweeps.search import check_search

        if self.algorithm not in ALGORITHMS:
            fail("search.algorithm", f"one of {', '.join(ALGORITHMS)}", self.algorithm)
        check_int("search.samples", self.samples, 1)
        check_search(self)
        if (self.algorithm not in ("grid", "optuna") or self.asha) and self.objective is None and not self.objectives:
            fail("search.objective", "given when the search is not a plain grid (say which scalar is optimised)",
                 None)
        if self.asha is not None:
            allowed = ("grace_period", "reduction_factor")
            if not isinstance(self.asha, dict) or set(self.asha) - set(allowed):
                fail("search.asha", f"a mapping with keys among {', '.join(allowed)}", self.asha)


@dataclass(frozen=True)
class Failure:
    """A worker group that fails is restarted from the trial's last checkpoint up to ``max_retries``
    times; a trial whose loss turns NaN or infinite ends ``diverged`` and the sweep goes on.
    ``checkpoint_every_epoch: false`` keeps only the final model: no DeepSpeed checkpoint (weights
    and optimizer state) between epochs, so a failed or resumed trial starts over."""

    max_retries: int = 1
    checkpoint_every_epoch: bool = True

    def __post_init__(self):
        check_int("failure.max_retries", self.max_retries, 0)
        if not isinstance(self.checkpoint_every_epoch, bool):
            fail("failure.checkpoint_every_epoch", "true or false", self.checkpoint_every_epoch)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    model: ModelSpec
    methods: dict  # method name -> {hyper-parameter: value or search primitive}
    benchmark: BenchmarkSpec = BenchmarkSpec()
    training: Training = Training()
    eval: EvalSpec = EvalSpec()
    scaling: Scaling = Scaling()
    search: Search = Search()
    failure: Failure = Failure()
    max_concurrent_trials: int = 1
    storage: str = "runs"
    tracking: Tracking = Tracking()  # MLflow / W&B besides the sweep's own files (sweeps.tracking)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            fail("name", "a non-empty name of letters, digits, '-', '_' or '.'", self.name)
        check_int("max_concurrent_trials", self.max_concurrent_trials, 1)
        if not isinstance(self.methods, dict) or not self.methods:
            fail("methods", "a non-empty mapping of method name to search space", self.methods)
        for name, space in self.methods.items():
            check_space(name, space or {})
        if not isinstance(self.storage, str) or not self.storage:
            fail("storage", "a directory path or URI", self.storage)
        declared = self.benchmark.build(self.benchmark.variants()[0][0]).declared
        if self.model.target and not self.model.oracle and declared.needs_oracle:
            fail("model.oracle", f"a model directory (the {self.benchmark.name} benchmark compares with the "
                 "retrained model)", self.model.oracle)
        self._check_oracles(declared)
        if declared.cannot_train:
            raise SpecError(f"benchmark.params: {declared.cannot_train}")
        from sweeps import relearn
        from sweeps.search import resolve

        relearn.check_spec(self, declared)
        object.__setattr__(self, "search", resolve(self))  # Optuna's objectives: by default the declared front
        if self.model.base and not declared.can_prepare:
            fail("model.base", f"left out: the {self.benchmark.name} benchmark comes with its own models and cannot "
                 "prepare them from a base model; give model.target (and model.oracle)", self.model.base)
        from unlearn import methods as registry

        for method in self.methods:
            if registry.get(method).needs_qa_forget and not declared.forget_qa:
                fail(f"methods.{method}", f"left out: it trains on question-answer forget examples, and the "
                     f"{self.benchmark.name} benchmark's forget set holds texts only", method)
        for key in self.benchmark.grid():
            for method in self.methods:
                own = _method_keys(method)
                if key in own or key in RESERVED:
                    fail(f"benchmark.params.{key}", f"a name that is not a hyper-parameter of {method} (it would "
                         "collide with one)", key)

    def _check_oracles(self, declared) -> None:
        """A given oracle fits every grid point: one model when the grid leaves the forgotten
        examples alone, one per grid point (exactly those) when it changes them."""
        oracle, names = self.model.oracle, [variant_name(label) for label, _ in self.benchmark.variants()]
        changing = [k for k in self.benchmark.grid() if k in declared.oracle_params]
        if isinstance(oracle, str) and changing:
            example = ", ".join(f"{name}: ..." for name in names[:2])
            fail("model.oracle", f"one retrained model per grid point, as benchmark.params.{changing[0]} changes "
                 f"what is forgotten: {{{example}{', ...' if len(names) > 2 else ''}}}", oracle)
        if isinstance(oracle, dict) and not self.benchmark.grid():
            fail("model.oracle", "one model directory or hub id (the benchmark has no grid)", oracle)
        if isinstance(oracle, dict):
            for key in oracle:
                if key not in names:
                    fail(f"model.oracle.{key}", f"a grid point of the benchmark: {', '.join(names) or 'none'}", key)
            missing = [name for name in names if name not in oracle]
            if missing:
                fail("model.oracle", f"a model for every grid point (missing: {', '.join(missing)})", oracle)

    def oracle_for(self, label: dict) -> str | None:
        """The given oracle of a grid point (``label``); None without one."""
        oracle = self.model.oracle
        return oracle.get(variant_name(label)) if isinstance(oracle, dict) else oracle

    def space(self, method: str) -> dict:
        return dict(self.methods[method] or {})


@dataclass(frozen=True)
class RunSettings:
    """A trial's training settings: the trial keys of its search space over the spec's defaults
    (``training`` and ``scaling``; :meth:`of` is the one place they are taken from), and its seed."""

    lr: float
    epochs: int
    micro_batch: int
    grad_accum: int
    workers: int
    zero_stage: int
    weight_decay: float
    seed: int

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_trial_key(f"run.{f.name}", f.name, getattr(self, f.name))

    @classmethod
    def defaults(cls, spec: SweepSpec) -> dict:
        """What a trial runs with when its space does not set a key (every key but ``lr``)."""
        training, scaling = spec.training, spec.scaling
        return {"epochs": training.epochs, "micro_batch": training.micro_batch, "grad_accum": training.grad_accum,
                "workers": scaling.workers, "zero_stage": scaling.zero_stage, "weight_decay": training.weight_decay,
                "seed": training.seeds[0]}

    @classmethod
    def of(cls, spec: SweepSpec, sampled: dict) -> RunSettings:
        """The settings of a trial that sampled ``sampled`` (its other keys are not settings)."""
        if "lr" not in sampled:
            fail("run.lr", "given (each method's space has its own)", None)
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{**cls.defaults(spec), **{k: v for k, v in sampled.items() if k in names}})


# Hyper-parameters of a trial besides the method's own fields (a trial's seed is the sweep's).
TRIAL_KEYS = tuple(f.name for f in dataclasses.fields(RunSettings) if f.name != "seed")


def method_fields(method: str) -> list[str]:
    """The names of a method's own hyper-parameters (the fields of its config)."""
    from unlearn import methods

    return [f.name for f in dataclasses.fields(methods.get(method))]


def _method_keys(method: str) -> list[str]:
    from unlearn.lora import FIELDS

    return method_fields(method) + list(TRIAL_KEYS) + [LORA] + [f"{LORA}_{f}" for f in FIELDS]


def softlabel_gammas(spec: SweepSpec) -> tuple:
    """The UnDIAL γ values of the soft-label analysis: every value the sweep's UnDIAL space can take
    (a range: its two ends), or UnDIAL's default γ when the sweep does not run UnDIAL."""
    from benchmarks.common import DEFAULT_SOFTLABEL_GAMMAS
    from unlearn import methods

    if "undial" not in spec.methods:
        return DEFAULT_SOFTLABEL_GAMMAS
    value = spec.space("undial").get("gamma", methods.get("undial").gamma)
    values = candidates("methods.undial.gamma", value) or list(DEFAULT_SOFTLABEL_GAMMAS)
    return tuple(sorted({float(v) for v in values}))


def needs_ref_nll(spec: SweepSpec) -> bool:
    """Whether a method of the sweep uses precomputed reference NLLs (NPO)."""
    from unlearn import methods

    return any(methods.get(m).needs_ref_nll for m in spec.methods)


def check_space(method: str, space: dict) -> None:
    """Unknown methods, unknown keys and impossible fixed values fail here, before Ray starts."""
    from unlearn import methods

    try:
        cls = methods.get(method)
    except ValueError as error:
        raise SpecError(f"methods: {error}") from None
    if not isinstance(space, dict):
        fail(f"methods.{method}", "a mapping of hyper-parameter to value or search primitive", space)
    own = [f.name for f in dataclasses.fields(cls)]
    clash = next((name for name in own if name in TRIAL_KEYS + RESERVED + (LORA,)), None)
    if clash is not None:
        fail(f"methods.{method}", f"a method whose fields are not named like a trial key or "
             f"{' or '.join(RESERVED + (LORA,))} (its field would collide with it)", clash)
    allowed = own + list(TRIAL_KEYS) + [LORA]
    if "lr" not in space:
        fail(f"methods.{method}.lr", "given (each method has its own learning-rate range)", None)
    for key, value in space.items():
        if key not in allowed:
            fail(f"methods.{method}.{key}", f"one of {', '.join(allowed)} (unknown key)", key)
        if key == LORA:
            check_lora(f"methods.{method}.{LORA}", value)
            continue
        for option in candidates(f"methods.{method}.{key}", value):
            if key in own:
                _check_method_value(method, key, option)
            else:
                check_trial_key(f"methods.{method}.{key}", key, option)


def check_lora(name: str, section) -> None:
    """A method's ``lora`` section: a mapping of LoRA fields, each a value or a primitive whose every
    value (a range: its two ends) is a valid one."""
    from unlearn.lora import FIELDS, LoraConfig

    if not isinstance(section, dict):
        fail(name, f"a mapping with keys among {', '.join(FIELDS)} (each a value or a search primitive)", section)
    for key, value in section.items():
        if key not in FIELDS:
            fail(f"{name}.{key}", f"one of {', '.join(FIELDS)} (unknown key)", key)
        for option in candidates(f"{name}.{key}", value):
            try:
                LoraConfig(**{key: option})
            except ValueError as error:
                raise SpecError(f"{name}.{error}") from None


def candidates(name: str, value) -> list:
    """The fixed values a YAML primitive can take (ranges: their two ends)."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in PRIMITIVES:
            fail(name, f"a value or one of {{{', '.join(k + ': [...]' for k in PRIMITIVES)}}}", value)
        kind, args = next(iter(value.items()))
        if not isinstance(args, (list, tuple)) or not args:
            fail(f"{name}.{kind}", "a non-empty list", args)
        if kind in ("uniform", "loguniform", "randint"):
            if len(args) != 2 or not all(is_number(a) for a in args) or args[0] >= args[1]:
                fail(f"{name}.{kind}", "[low, high] numbers with low < high", args)
            if kind == "loguniform" and args[0] <= 0:
                fail(f"{name}.{kind}", "[low, high] with low > 0", args)
        return list(args)
    if type(value).__module__.startswith("ray.tune"):
        return []  # a Tune domain object from the Python API
    return [value]


def check_trial_key(name: str, key: str, value) -> None:
    """The allowed values of a trial key (and of a trial's seed); ``name`` is the field reported."""
    if key == "lr":
        check_number(name, value, strict=True)
    elif key in ("epochs", "micro_batch", "grad_accum", "workers"):
        check_int(name, value, 1)
    elif key == "zero_stage":
        check_int(name, value, 0, 3)
    elif key == "weight_decay":
        check_number(name, value)
    elif key == "seed":
        check_int(name, value, 0)


def _check_method_value(method: str, key: str, value) -> None:
    from unlearn import methods

    try:
        methods.make(method, {key: value})
    except ValueError as error:
        raise SpecError(f"methods.{method}: {error}") from None


# ------------------------------------------------------------------------------------ YAML edge

SECTIONS = {"model": ModelSpec, "benchmark": BenchmarkSpec, "training": Training, "eval": EvalSpec,
            "scaling": Scaling, "search": Search, "failure": Failure, "tracking": Tracking}


def _build(cls, raw, where: str):
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        fail(where, "a mapping", raw)
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in allowed:
            fail(f"{where}.{key}", f"one of {', '.join(allowed)} (unknown key)", key)
    raw = dict(raw)
    if cls is Search and isinstance(raw.get("objective"), dict):
        raw["objective"] = _build(Objective, raw["objective"], "search.objective")
    if cls is Search and isinstance(raw.get("objectives"), (list, tuple)):
        from sweeps.search import build_objectives

        raw["objectives"] = build_objectives(raw["objectives"], lambda item, at: _build(Objective, item, at))
    try:
        return cls(**raw)
    except TypeError as error:
        raise SpecError(f"{where}: {error}") from None


def from_dict(raw: dict) -> SweepSpec:
    if not isinstance(raw, dict):
        fail("spec", "a mapping at the top level", type(raw).__name__)
    allowed = [f.name for f in dataclasses.fields(SweepSpec)]
    for key in raw:
        if key not in allowed:
            fail(key, f"one of {', '.join(allowed)} (unknown key)", key)
    for key in ("name", "model", "methods"):
        if key not in raw:
            fail(key, "given", None)
    values = {k: (_build(SECTIONS[k], v, k) if k in SECTIONS else v) for k, v in raw.items()}
    return SweepSpec(**values)


def load(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec (duplicate keys are an error, as any unknown key)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist")

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        keys = [loader.construct_object(k, deep=True) for k, _ in node.value]
        duplicate = next((k for k in keys if keys.count(k) > 1), None)
        if duplicate is not None:
            raise SpecError(f"{path}: key {duplicate!r} appears twice")
        return loader.construct_mapping(node, deep=True)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    # YAML 1.1 reads `1e-3` as a string; a learning rate written that way is a number.
    Strict.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
        r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    try:
        raw = yaml.load(path.read_text(), Loader=Strict)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SpecError(f"{path}: not valid YAML{where}") from None
    return from_dict(raw)


def with_benchmark_seed(spec: SweepSpec, seed: int) -> SweepSpec:
    """``spec`` with its benchmark's ``seed`` parameter replaced (validated as the benchmark validates it)."""
    check_int("benchmark.params.seed", seed, 0)
    benchmark = dataclasses.replace(spec.benchmark, params={**spec.benchmark.params, "seed": seed})
    return dataclasses.replace(spec, benchmark=benchmark)


def to_dict(spec: SweepSpec) -> dict:
    """The resolved spec as plain data (saved beside the results)."""
    return dataclasses.asdict(spec)
