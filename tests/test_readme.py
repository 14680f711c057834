"""Every command of the README runs: the quick-start spec is `sweeps/specs/tiny.yaml` and loads;
its `unlearn sweep` and `unlearn report` lines parse, and the report runs on the session's tiny
sweep; the Python example runs as written; the two commands are the Makefile's."""

import math
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TINY = ROOT / "sweeps" / "specs" / "tiny.yaml"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def without_comments(text: str) -> str:
    lines = [re.sub(r"\s+#.*$", "", line).rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


def commands(program: str) -> list[list[str]]:
    """The README's shell lines that run ``program``, split as the shell would (comments dropped)."""
    return [shlex.split(line, comments=True) for block in blocks("bash") for line in block.splitlines()
            if line.startswith(program + " ")]


def test_the_quick_start_spec_is_the_tiny_spec():
    (spec,) = blocks("yaml")
    assert without_comments(spec) == without_comments(TINY.read_text())


def test_the_quick_start_spec_loads(tmp_path):
    from sweeps import spec as specs

    (text,) = blocks("yaml")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    spec = specs.load(path)
    assert spec.model.base == "tiny" and spec.benchmark.name == "synthetic" and 1 <= len(spec.methods) <= 2


def test_the_quick_start_commands_parse_and_name_the_sweep(tmp_path):
    from sweeps import cli
    from sweeps import spec as specs

    (text,) = blocks("yaml")
    (tmp_path / "spec.yaml").write_text(text)
    name = specs.load(tmp_path / "spec.yaml").name
    (sweep,) = [argv for argv in commands("unlearn") if argv[1] == "sweep"]
    (report,) = [argv for argv in commands("unlearn") if argv[1] == "report"]
    args = cli.parser().parse_args(sweep[1:])
    assert args.spec == "spec.yaml" and args.storage == "runs"
    args = cli.parser().parse_args(report[1:])
    assert args.paths == [f"{args_storage(sweep)}/{name}"] and args.output.endswith(".html")


def args_storage(argv: list[str]) -> str:
    return argv[argv.index("--storage") + 1]


def test_the_two_commands_are_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    assert [argv for argv in commands("make")] == [["make", "demo"], ["make", "test"]]
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_python_example_runs(capsys):
    (code,) = blocks("python")
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)
    state = namespace["state"]
    assert state.epoch == 2 and state.step == 2
    assert all(math.isfinite(v) for k, v in state.metrics.items() if k.endswith("loss"))
    assert capsys.readouterr().out.count("forget_loss") == 2  # report=print: one line per step


@pytest.mark.ray
@pytest.mark.slow
def test_unlearn_report_runs_on_the_quick_start_sweep(tiny_sweep, tmp_path, capsys):
    from sweeps import cli

    (report,) = [argv for argv in commands("unlearn") if argv[1] == "report"]
    out = tmp_path / "report.html"
    assert cli.main(["report", str(tiny_sweep["dir"]), "-o", str(out)]) == 0
    assert report[1] == "report" and "-o" in report
    text = out.read_text()
    assert "unilogit" in text and "undial" in text and "data:image/png;base64," in text
    assert "wrote" in capsys.readouterr().out
