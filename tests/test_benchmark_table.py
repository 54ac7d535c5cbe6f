"""python -m benchmarks.table at a toy size: every task's baseline and engine rows in table.md
and results.json; the worst seed is the one reported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import table  # noqa: E402


def test_toy_table_has_every_row(tmp_path, capsys):
    out = tmp_path / "table"
    assert table.main(["--out", str(out), "--seeds", "0", "--iters", "1", "--minutes-per-run", "2",
                       "--engines", "munit", "funit", "--tasks", "keep_change", "fewshot_stain",
                       "--tile", "128", "--samples", "2"]) == 0
    text = (out / "table.md").read_text(encoding="utf-8")
    results = json.loads((out / "results.json").read_text())
    assert "## keep_change" in text and "## fewshot_stain" in text and "Machine:" in text
    for method in ("identity", "histogram matching", "Reinhard (torchstain)", "Macenko (torchstain)", "munit small"):
        assert any(r["task"] == "keep_change" and r["method"] == method for r in results["rows"]), method
        assert f"| {method}" in text
    fewshot = {(r["method"], r["k"]) for r in results["rows"] if r["task"] == "fewshot_stain"}
    for method in ("identity", "nearest training class", "Macenko (torchstain)", "funit small"):
        assert {(method, 1), (method, 5)} <= fewshot, method
    engine_rows = [r for r in results["rows"] if r["kind"] == "engine"]
    assert engine_rows and all(r["iterations"] == 1 for r in engine_rows)
    table_lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_lines) == len(table.worst_rows(results["rows"])) + 2  # + one header per task


def test_worst_seed_is_reported():
    rows = [{"task": "stain", "method": "m", "k": None, "kind": "engine", "seed": s, "l1": l1, "iterations": 5}
            for s, l1 in ((0, 3.0), (1, 9.0), (2, 4.0))]
    rows += [{"task": "digits", "method": "m", "k": None, "kind": "engine", "seed": s, "digit_kept": v}
             for s, v in ((0, 0.9), (1, 0.5))]
    worst = {r["task"]: r for r in table.worst_rows(rows)}
    assert worst["stain"]["seed"] == 1 and worst["stain"]["iterations_per_seed"] == [5, 5, 5]
    assert worst["digits"]["seed"] == 1, "higher is better for the digit judge"


def test_bad_budget_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        table.main(["--out", str(tmp_path), "--minutes-per-run", "0"])
    assert "--minutes-per-run must be positive" in capsys.readouterr().err


def test_settings_reach_the_runs_and_score_only_rescores_them(tmp_path):
    out = tmp_path / "table"
    common = ["--out", str(out), "--seeds", "0", "--engines", "unit", "--tasks", "stain", "--tile", "32"]
    assert table.main([*common, "--iters", "2", "--set", "identity_weight=2.5"]) == 0
    trained = json.loads((out / "results.json").read_text())
    settings = json.loads((out / "runs" / "stain_unit_seed0" / "run.json").read_text())
    assert settings["training"]["identity_weight"] == 2.5 and trained["training"] == {"identity_weight": 2.5}
    assert "identity_weight = 2.5" in (out / "table.md").read_text(encoding="utf-8")
    assert table.main([*common, "--score-only"]) == 0
    rescored = json.loads((out / "results.json").read_text())
    engine = [[r for r in result["rows"] if r["kind"] == "engine"] for result in (trained, rescored)]
    assert engine[1] and engine[1][0]["l1"] == engine[0][0]["l1"] and engine[1][0]["iterations"] == 2


def test_bad_setting_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        table.main(["--out", str(tmp_path), "--set", "identity_weight"])
    assert "--set and --model-set take KEY=VALUE" in capsys.readouterr().err
