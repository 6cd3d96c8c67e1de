"""The likeliest first edits of a template, through the console script: each error gives the valid shape
and an example to copy, never a pydantic class name or a regular expression."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli_ux import copy_example, no_traceback, run

EDITS = [
    ("retention_hours: 24", "retention_hours: 12", "stream.retention_hours", "e.g. `retention_hours: 24`"),
    ("stream:\n", "uploads: true\nstream:\n", "uploads", "`uploads: {}`"),
    ("    trigger:\n      objects:\n        from: preprocess\n", "    trigger: http\n", "stages[1].trigger", "`trigger: {http: {}}`"),
    ("    project: txn-scoring-demo", "    project: My Project", "clouds.gcp.project", "`project: my-project-123`"),
]


@pytest.mark.parametrize(("before", "after", "path", "example"), EDITS, ids=["retention", "uploads-true", "trigger-http", "gcp-project"])
def test_a_first_edit_gets_the_valid_shape_and_an_example(tmp_path: Path, before: str, after: str, path: str, example: str) -> None:
    spec = copy_example(tmp_path / "txn")
    text = spec.read_text()
    assert before in text
    spec.write_text(text.replace(before, after, 1))
    result = run("validate", spec, "--format", "json")
    assert result.returncode == 2, result.stdout
    [problem] = json.loads(result.stdout)["error"]["problems"]
    assert problem["path"] == path and problem["line"] and problem["column"]
    words = problem["message"] + " " + problem["hint"]
    assert example in words, words
    assert not re.search(r"instance of|should match pattern|\^\[|Input should", words), words
    assert example in result.stderr  # people read the same text
    no_traceback(result)
