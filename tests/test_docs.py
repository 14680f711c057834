"""The documentation stays true to the repository: every file a text names exists, and the spec
reference documents every field of the spec's dataclasses with its default."""

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC_DOC = ROOT / "docs" / "spec.md"

# --------------------------------------------------------------------------- references to files

SUFFIXES = (".md", ".py", ".yaml", ".json")
# Names that look like paths but are not references to a file of this repository:
NOT_FILES = (
    re.compile(r"[<>{}$~]"),  # templates and placeholders: `<method>/<trial>/`, `$UNLEARN_CACHE/...`, `~/.cache/...`
    re.compile(r"^/"),  # absolute paths on a user's machine or cluster: `/mnt/shared/...`, `/data/my-task`
    re.compile(r"://"),  # URLs
    re.compile(r"^\.\.\.|…"),  # elided paths
)
# Files a walk-through asks the reader to create; they exist only once the reader has followed it.
TO_BE_CREATED = {"benchmarks/qa_pairs.py", "unlearn/methods/cga.py", "tests/test_cga.py"}
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def text_files() -> list[Path]:
    """Tracked files and new ones git does not ignore, except the test fixtures' data."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    files = []
    for name in sorted(set(out.splitlines())):
        path = ROOT / name
        if name.startswith("tests/fixtures/") or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def exists(name: str, where: Path) -> bool:
    """``name`` relative to the repository root or to the citing file's directory (globs allowed)."""
    name = name.rstrip("/")
    for base in (ROOT, where.parent):
        if "*" in name:
            if list(base.glob(name)):
                return True
        elif (base / name).exists():
            return True
    return False


def path_like(token: str) -> bool:
    """A repository path (it has a directory part), or a Markdown file named without one."""
    token = token.split("#")[0].split("::")[0]
    if not token.endswith(SUFFIXES) or any(p.search(token) for p in NOT_FILES):
        return False
    return "/" in token or token.endswith(".md")


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    anchors = set()
    for title in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M):
        title = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", title).strip().lower()
        anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", title)))
    return anchors


def missing_references(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    markdown = path.suffix == ".md"
    problems = []
    # inline code (Markdown spans, reST ``literals`` in docstrings, `quoted` names in comments)
    body = FENCE.sub("", text) if markdown else text
    for span in SPAN.findall(body):
        for token in span.split():
            token = token.strip(".,;:()[]'\"")
            if path_like(token) and token not in TO_BE_CREATED and not exists(token.split("::")[0], path):
                problems.append(f"{path.relative_to(ROOT)}: `{token}` does not exist")
    # Markdown links: relative to the file, anchors included
    if markdown:
        for target in LINK.findall(body):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            name, _, anchor = target.partition("#")
            linked = (path.parent / name) if name else path
            if not linked.exists():
                problems.append(f"{path.relative_to(ROOT)}: link ({target}) names a missing file")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                problems.append(f"{path.relative_to(ROOT)}: link ({target}) names a missing heading")
    return problems


def test_no_reference_to_a_missing_file():
    files = text_files()
    assert any(f.name == "README.md" for f in files)
    problems = [p for f in files for p in missing_references(f)]
    assert not problems, "references to missing files:\n" + "\n".join(problems)


def test_the_reference_check_catches_what_it_should():
    page = ROOT / "docs" / "_probe.md"  # never written: only its directory is used
    assert path_like("docs/nothing-here.md") and path_like("NOTES.md") and path_like("sweeps/specs/tiny.yaml")
    assert not path_like("unlearn/methods/<name>.py") and not path_like("metrics.jsonl")
    assert not path_like("/mnt/shared/spec.yaml") and not path_like("result.json")
    assert exists("methods.md", page) and exists("sweeps/specs/tiny.yaml", page)
    assert not exists("nothing-here.md", page)
    assert exists("perf/results/*.json", page)


# --------------------------------------------------------------------------- the spec reference

# The dataclasses of a spec and where their fields sit in YAML (the top level has none).
SECTIONS = {"SweepSpec": "", "ModelSpec": "model.", "BenchmarkSpec": "benchmark.", "Training": "training.",
            "EvalSpec": "eval.", "Scaling": "scaling.", "Search": "search.", "Objective": "search.objective.",
            "Failure": "failure.", "Tracking": "tracking.", "MLflow": "tracking.mlflow.", "Wandb": "tracking.wandb."}


def documented_rows() -> dict[str, list[str]]:
    """``{field: [cells after the first]}`` for every table row whose first cell is a `name`."""
    rows = {}
    for line in SPEC_DOC.read_text().splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def yaml_default(f: dataclasses.Field):
    """How the reference writes a field's default (None: not checked, a nested section)."""
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "`required`"
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if dataclasses.is_dataclass(value):
        return None
    value = list(value) if isinstance(value, tuple) else value
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return f"`{text.removesuffix('...').strip()}`"


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_spec_reference_documents_every_field(name):
    from sweeps import spec, tracking

    cls = getattr(spec, name, None) or getattr(tracking, name)
    rows = documented_rows()
    missing = [SECTIONS[name] + f.name for f in dataclasses.fields(cls) if SECTIONS[name] + f.name not in rows]
    assert not missing, f"docs/spec.md has no row for {', '.join(missing)} ({name})"
    for f in dataclasses.fields(cls):
        expected = yaml_default(f)
        cells = rows[SECTIONS[name] + f.name]
        if expected is not None:
            assert cells[0] == expected, f"docs/spec.md: {SECTIONS[name] + f.name} default is {cells[0]}, " \
                                         f"the code says {expected}"
        assert len(cells) > 1 and cells[-1], f"docs/spec.md: {SECTIONS[name] + f.name} has no meaning"


# --------------------------------------------------------------------------- the method walk-through

METHOD_DOC = ROOT / "docs" / "adding-a-method.md"


def code_blocks(path: Path, kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


@pytest.fixture
def cga(tmp_path, monkeypatch):
    """The page's loss added to ``unlearn.losses`` and its config registered, for the test only."""
    import importlib.util

    from unlearn import losses
    from unlearn.methods import base

    loss_code, method_code = code_blocks(METHOD_DOC, "python")
    namespace = dict(vars(losses))
    exec(compile(loss_code, str(METHOD_DOC), "exec"), namespace)
    monkeypatch.setattr(losses, "cga", namespace["cga"], raising=False)
    path = tmp_path / "cga_example.py"
    path.write_text(method_code)
    spec = importlib.util.spec_from_file_location("cga_example", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        base._REGISTRY.pop("cga", None)


def test_the_method_walk_through_runs(cga):
    import torch

    from sweeps import spec as specs
    from unlearn import methods

    method = methods.make("cga", {"ceiling": 2.5, "retain": "nll"})
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 13, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    labels = torch.randint(0, 13, (3, 7), generator=g)
    labels[:, :2] = -100
    labels[1, -2:] = -100
    value = method.forget_loss(logits, labels)
    # independently: log p_y by log_softmax and gather, the NLL clipped at the ceiling
    log_p = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    mask = labels[:, 1:] != -100
    expected = -torch.minimum(-log_p, torch.tensor(2.5, dtype=log_p.dtype))[mask].mean()
    assert ((-log_p > 2.5) & mask).any() and ((-log_p < 2.5) & mask).any()  # both sides of the ceiling
    assert torch.allclose(value, expected)
    (grad,) = torch.autograd.grad(value, logits, retain_graph=True)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    assert torch.allclose(grad, grad_expected)
    with pytest.raises(ValueError, match="ceiling must be a number > 0"):
        methods.make("cga", {"ceiling": 0})
    (text,) = code_blocks(METHOD_DOC, "yaml")
    for name, space in yaml.safe_load(text)["methods"].items():
        specs.check_space(name, space)
