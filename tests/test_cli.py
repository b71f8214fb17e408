"""The deft command line end to end, run as a user would: a subprocess per command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest


def deft(*args: str, home=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if home is not None:
        env["DEFT_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "deft_core", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.model
def test_score_then_filter_sample(tmp_path, fresh_home):
    scores = tmp_path / "scores.parquet"
    result = deft("score", "sample", "--limit", "24", "--out", str(scores), home=fresh_home)
    assert result.returncode == 0, result.stderr
    assert "scored 24 pairs" in result.stdout
    table = pd.read_parquet(scores)
    assert len(table) == 24
    assert (tmp_path / "scores.meta.json").is_file()

    cached = deft(
        "score", "sample", "--limit", "24", "--out", str(tmp_path / "again.parquet"), home=fresh_home
    )
    assert "from cache" in cached.stdout

    kept = tmp_path / "kept.jsonl"
    result = deft("filter", str(scores), "--top", "25", "--out", str(kept), home=fresh_home)
    assert result.returncode == 0, result.stderr
    assert "kept 6 of 24 pairs" in result.stdout
    kept_lines = kept.read_text().splitlines()
    dropped_lines = (tmp_path / "kept.dropped.jsonl").read_text().splitlines()
    assert len(kept_lines) == 6
    assert len(dropped_lines) == 18
    assert set(json.loads(kept_lines[0])) == {"chosen", "rejected"}  # the HH-RLHF layout, as read
    ids = json.loads((tmp_path / "kept.ids.json").read_text())
    best = table.sort_values("score", ascending=False, kind="stable")["pair_id"].head(6)
    assert set(ids["kept_ids"]) == set(best)

    random = deft(
        "filter", str(scores), "--random", "25", "--seed", "3", "--out", str(tmp_path / "r.parquet")
    )
    assert random.returncode == 0, random.stderr
    assert len(pd.read_parquet(tmp_path / "r.parquet")) == 6

    empty = deft("filter", str(scores), "--threshold", "1e9", "--out", str(tmp_path / "none.jsonl"))
    assert empty.returncode == 0, empty.stderr
    assert "kept 0 of 24" in empty.stdout
    assert "warning: no pair has score >= 1e+09" in empty.stderr


def test_audit_command_reports_problems(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go."}
    path.write_text(json.dumps(good) + "\n{oops\n")
    result = deft("audit", str(path), "--json")
    assert result.returncode == 0, result.stderr
    audit = json.loads(result.stdout)
    assert audit["pairs_loaded"] == 1
    assert audit["counts"] == {"unparseable": 1}
    assert audit["examples"]["unparseable"][0]["line"] == 2


def test_tokens_command_lists_both_sides():
    result = deft("tokens", "sample", "--top", "5")
    assert result.returncode == 0, result.stderr
    assert "favoured in chosen" in result.stdout
    assert "favoured in rejected" in result.stdout


@pytest.mark.model
def test_score_one_pair_singular(tmp_path, fresh_home):
    result = deft("score", "sample", "--limit", "1", "--out", str(tmp_path / "one.parquet"), home=fresh_home)
    assert result.returncode == 0, result.stderr
    assert "read 1 row from" in result.stderr
    assert ": 1 pair, 0 skipped" in result.stderr
    assert "scored 1 pair in" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "missing.jsonl", "--out", "x.parquet"], "file not found"),
        (["score", "sample", "--out", "x.csv"], "give a name ending in .parquet"),
        (["filter", "missing.parquet", "--top", "5", "--out", "k.jsonl"], "score file not found"),
        (["audit", "sample", "--columns", "answer=x"], "unknown column mapping"),
        (["audit", "sample", "--strict", "--columns", "chosen=nope"], "column 'nope'"),
        ([], "required: command"),
        (["train"], "no training config: give --config FILE.yaml"),
        (["train", "missing.yaml"], "give a config file as --config missing.yaml"),
        (["train", "--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["ablate"], "no ablation config: give --config FILE.yaml"),
        (["ablate", "--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["compare"], "required: RUN; run `deft compare --help`"),
        (["compare", "missing-run"], "run not found: missing-run"),
        (["filter", "missing.parquet", "--top", "5"], "required: --out"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "deft_core", *args], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["score", "filter", "audit", "tokens", "train"])
def test_every_command_has_help(command):
    result = deft(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: deft" in result.stdout
