"""The README's benchmark table lists every metric of every registered benchmark with its role,
direction and scale, as the benchmarks declare them (a failing run prints the table to paste)."""

from pathlib import Path

import benchmarks
from benchmarks.common import DEFAULT_SOFTLABEL_GAMMAS, EvalConfig
from benchmarks.spec import ROLES
from helpers.contract import PARAMS

README = Path(__file__).resolve().parents[1] / "README.md"
def arrow(direction) -> str:
    return {"min": "↓", "max": "↑"}.get(direction) or f"→ {direction:g}"


def metrics_table() -> str:
    config = EvalConfig(softlabel_gammas=DEFAULT_SOFTLABEL_GAMMAS)
    lines = ["| benchmark | role | metrics (↓ lower is better, ↑ higher, → t best at t; ×100: the paper's scale) |",
             "|---|---|---|"]
    for name in benchmarks.names():
        metrics = benchmarks.get(name, **PARAMS[name]).metrics(config)
        for role in ROLES:
            mine = [m for m in metrics if m.role == role]
            if mine:
                cells = ", ".join(f"`{m.name}` {arrow(m.direction)}"
                                  + (" ×100" if m.scale == 100 else "") for m in mine)
                lines.append(f"| `{name}` | {role} | {cells} |")
    return "\n".join(lines)


def test_readme_lists_every_metric_with_its_role():
    table = metrics_table()
    assert table in README.read_text(), "README.md's metric table is out of date; it should read:\n\n" + table
