"""Malformed specs, CLI arguments and data files: one line naming what is wrong, no traceback,
nothing written. Runs the real command line in-process (and a few as subprocesses)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.sweep_specs import BAD, TINY, apply, raw
from sweeps import cli

ROOT = Path(__file__).resolve().parents[1]


def spec_file(tmp_path: Path, change: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(apply(raw(), change)))
    return path


def run_cli(argv) -> str:
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    message = str(error.value)
    assert message.startswith("unlearn: error:") or error.value.code == 2, message
    assert "\n" not in message.strip() and "Traceback" not in message
    return message


@pytest.mark.parametrize("change,message", BAD, ids=[m.split(" ")[0] for _, m in BAD])
def test_bad_spec_through_the_cli(change, message, tmp_path):
    storage = tmp_path / "runs"
    out = run_cli(["sweep", str(spec_file(tmp_path, change)), "--storage", str(storage)])
    assert message in out
    assert not storage.exists()


CLI = [
    (["sweep", "missing.yaml"], "spec file 'missing.yaml' does not exist"),
    (["sweep", "{spec}", "--resume", "--storage", "{tmp}/none"], "--resume: no sweep 'tiny'"),
    (["sweep", "{spec}", "--storage", "{tmp}/a-file"], "a-file is a file, not a directory"),
    (["sweep", "{spec}", "--storage", "{tmp}/a-file/runs"], "a-file is a file, not a directory"),
    (["prepare", "rwku", "--base-model", "tiny"], "benchmark 'rwku' cannot prepare a target and an oracle"),
    (["status", "{tmp}"], "is not a sweep directory"),
    (["export", "{tmp}", "x", "--out", "{tmp}/o"], "is not a sweep directory"),
    (["eval", "--model", "/no/such/dir"], "model path '/no/such/dir' does not exist"),
    (["prepare", "synthetic", "--base-model", "tiny", "--max-epochs", "0"],
     "recipe.max_epochs must be an integer >= 1"),
    (["prepare", "nothing", "--base-model", "tiny"], "unknown benchmark 'nothing'"),
    (["prepare", "synthetic", "--base-model", "tiny", "--param", "facts=99"], "synthetic.facts must be"),
]


@pytest.mark.parametrize("argv,message", CLI, ids=[a[0] + "-" + m.split(" ")[0] for a, m in CLI])
def test_bad_cli_arguments(argv, message, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_CACHE", str(tmp_path / "cache"))
    argv = [a.format(spec=TINY, tmp=tmp_path) for a in argv]
    (tmp_path / "a-file").write_text("results of something else\n")
    assert message in run_cli(argv)
    assert (tmp_path / "a-file").read_text() == "results of something else\n"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o").exists()


def test_unknown_subcommand_and_missing_argument_use_argparse(capsys):
    for argv in (["sweeep"], ["export", "run"]):
        with pytest.raises(SystemExit) as error:
            cli.main(argv)
        assert error.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_existing_results_are_never_overwritten(tmp_path):
    sweep_dir = tmp_path / "runs" / "tiny"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "spec.yaml").write_text("name: tiny\n")
    (sweep_dir / "keep.txt").write_text("precious")
    out = run_cli(["sweep", str(TINY), "--storage", str(tmp_path / "runs")])
    assert "already exist" in out and "--resume" in out
    assert (sweep_dir / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["keep.txt", "spec.yaml"]


@pytest.mark.parametrize("argv", [["sweep", "nope.yaml"], ["status", "/nonexistent"]])
def test_the_real_command_prints_one_line(argv):
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", *argv], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
