"""Every teaching notebook runs top to bottom, offline, with the bundled model and small settings."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.model
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("DEFT_NB_LIMIT", "24")
    monkeypatch.setenv("DEFT_NB_STEPS", "1")
    monkeypatch.setenv("DEFT_NB_MAX_LENGTH", "96")
    monkeypatch.setenv("DEFT_NB_WORK", str(tmp_path))
    monkeypatch.setenv("DEFT_NB_PROMPTS", "2")
    monkeypatch.setenv("DEFT_NB_NEW_TOKENS", "8")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=dict(os.environ))
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
