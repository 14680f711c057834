"""reports.record: a trial's rows (a partly written last line skipped, any other bad line refused),
the writer that never leaves a partial line inside a record, the trial id, and one state per trial
that ``unlearn status``, ``unlearn export`` and the report's ``status`` column all show."""

import json
from pathlib import Path

import pytest

import reports
from helpers.report_sweeps import make_sweep
from reports import record
from reports.record import STATES, RecordError, append_row, read_rows
from sweeps import cli, results
from sweeps.trial import finished


def write_lines(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path.parent


def test_a_partly_written_last_line_is_skipped(tmp_path):
    trial = write_lines(tmp_path / "t" / record.METRICS, '{"epoch": 1, "status": "ok"}\n', '{"epoch": 2, "sta')
    assert read_rows(trial) == [{"epoch": 1, "status": "ok"}]


def test_a_bad_line_before_the_last_is_refused(tmp_path):
    trial = write_lines(tmp_path / "t" / record.METRICS, '{"epoch": 1}\n', "not json\n", '{"epoch": 2}\n')
    with pytest.raises(RecordError, match=r"metrics.jsonl: line 2 is not a JSON object"):
        read_rows(trial)


def test_our_record_wins_over_tunes_and_a_rerun_epoch_keeps_its_last_row(tmp_path):
    trial = write_lines(tmp_path / "t" / record.RESULT, '{"epoch": 1, "loss": 9}\n')
    assert read_rows(trial) == [{"epoch": 1, "loss": 9}]
    write_lines(trial / record.METRICS, '{"epoch": 1, "loss": 3}\n', '{"epoch": 2, "loss": 2}\n',
                '{"epoch": 2, "loss": 1}\n', "\n")
    assert read_rows(trial) == [{"epoch": 1, "loss": 3}, {"epoch": 2, "loss": 1}]
    assert read_rows(tmp_path / "empty") == []


def test_the_writer_drops_a_partial_last_line_before_appending(tmp_path):
    trial = write_lines(tmp_path / "t" / record.METRICS, '{"epoch": 1}\n', '{"epoch": 2, "lo')  # a crash mid-write
    append_row(trial, {"epoch": 2, "loss": 1.0})
    append_row(trial, {"epoch": 3, "path": Path("/x")})
    assert (trial / record.METRICS).read_text().splitlines() == [
        '{"epoch": 1}', '{"epoch": 2, "loss": 1.0}', '{"epoch": 3, "path": "/x"}']
    append_row(tmp_path / "new", {"epoch": 1})
    assert read_rows(tmp_path / "new") == [{"epoch": 1}]


def test_the_trial_id_is_read_from_tunes_directory_name():
    assert record.trial_id("run_trial_95357_00004_4_lr=0.0300,seed=0_2026-11-28") == "95357_00004"
    assert record.trial_id("elsewhere") == "elsewhere"
    assert record.train_name("95357_00004") == "train-95357_00004"


@pytest.fixture
def sweep(tmp_path) -> Path:
    """The reports' result tree, plus a trial with no epoch yet and one whose last row diverged."""
    sweep = make_sweep(tmp_path)
    pending = sweep / "undial" / "run_trial_337b1_00004_4_lr=0.1000,seed=0_2026-11-28"
    write_lines(pending / record.PARAMS, json.dumps({"lr": 0.1, "seed": 0, "gamma": 10}))
    diverged = sweep / "undial" / "run_trial_337b1_00005_5_lr=1.0000,seed=0_2026-11-28"
    write_lines(diverged / record.PARAMS, json.dumps({"lr": 1.0, "seed": 0, "gamma": 10}))
    append_row(diverged, {"epoch": 1, "status": record.OK, "final": False, "method": "undial"})
    append_row(diverged, {"epoch": 2, "status": record.DIVERGED, "final": True, "method": "undial",
                          "error": "non-finite loss after step 6"})
    stopped = sweep / "undial" / "run_trial_337b1_00006_6_lr=0.0100,seed=0_2026-11-28"  # ASHA stopped it
    write_lines(stopped / record.PARAMS, json.dumps({"lr": 0.01, "seed": 0, "gamma": 10}))
    append_row(stopped, {"epoch": 1, "status": record.OK, "final": False, "method": "undial"})
    write_lines(stopped / record.STOPPED_EARLY, json.dumps({"epoch": 1}))
    return sweep


def test_status_and_the_report_show_one_state_per_trial(sweep):
    states = {t.trial_id: t.state for t in record.trials(sweep)}
    assert set(states.values()) == set(STATES)
    df = reports.load(sweep)
    trials = df[df["role"] == "trial"].drop_duplicates("trial")
    assert dict(zip(trials["trial"], trials["status"])) == states
    assert trials.loc[trials["trial"] == "337b1_00005", "error"].item() == "non-finite loss after step 6"
    lines = results.status_lines(sweep)
    assert lines[0] == f"sweep tiny: {len(states)} trials"
    assert "  undial    2 ok, 1 pending, 2 diverged, 1 error, 1 stopped" in lines
    assert "  unilogit  4 ok, 1 running, 1 error" in lines
    shown = {line.split()[0]: line.split()[1] for line in lines[1:] if line.startswith("    ")}
    assert shown == states


def test_finished_trials_are_not_run_again(sweep):
    by_state = {t.state: t.path for t in record.trials(sweep)}
    assert finished(by_state["ok"]) and finished(by_state["diverged"])
    assert not finished(by_state["running"]) and not finished(by_state["pending"])


def test_status_and_export_on_the_command_line(sweep, tmp_path, capsys):
    assert cli.main(["status", str(sweep)]) == 0
    assert "337b1_00004  pending   epoch -" in capsys.readouterr().out
    assert cli.main(["export", str(sweep), "95357_00000", "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model").is_dir()
    with pytest.raises(SystemExit, match="has no checkpoint yet \\(state: pending\\)"):
        cli.main(["export", str(sweep), "337b1_00004", "--out", str(tmp_path / "other")])
    bad = next(sweep.glob("unilogit/run_trial_*")) / record.RESULT
    bad.write_text("not json\n" + bad.read_text())
    with pytest.raises(SystemExit, match="line 1 is not a JSON object"):
        cli.main(["status", str(sweep)])
