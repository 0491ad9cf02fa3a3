"""The README's tour, copied verbatim, runs as written: offline, on the real embedded model,
with the real benchmark data, and measures something (answers read, not rambles).

How long it takes is measured by ``benchmarks/bench_tour.py``, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lpo_ci import local_model
from tests.support.readme_tour import tour, write_tour

pytestmark = pytest.mark.skipif(not local_model.is_available(), reason=local_model.INSTALL_HINT)


def test_the_tour_is_self_contained():
    path, template, pyproject, commands = tour()
    assert path.startswith("prompts/") and "{# lpo:" in template
    assert "\nmodel" not in pyproject  # no provider: the embedded model, offline
    assert [c[0] for c in commands] == ["pytest", "pytest", "pytest", "lpo-ci"]
    assert any("--lpo-report=lpo-report.json" in c for c in commands)


@pytest.mark.slow
def test_the_readme_tour_runs_as_written_offline_on_the_embedded_model(tmp_path, real_data_dir):
    commands = write_tour(tmp_path)
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC", "PYTEST_", "CI"))}
    env.update(LPO_CI_DATA_DIR=str(real_data_dir), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    outputs = []
    for command in commands:
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        outputs.append(run.stdout + run.stderr)
        assert run.returncode == 0, (command, outputs[-1])
        assert "Traceback" not in outputs[-1]
    first = outputs[0]
    assert "the embedded local model (offline, no key)" in first
    assert "1 template: 1 passed, 0 failed, 0 errors; 50 calls, 0 cache hits" in first
    assert "0 calls, 50 cache hits" in outputs[2] and "0 calls, 50 cache hits" in outputs[3]

    item = json.loads((tmp_path / "lpo-report.json").read_text())["templates"][0]
    assert item["reference"] == "baseline" and item["status"] == "pass"
    head = item["head"]
    # the defaults for a base model: completion, the template's stop, a short answer budget
    assert head["n"] == 50 and head["format_failures"] <= 5, head
    assert 0.3 <= head["accuracy"] <= 0.9, head
    assert head["usage"]["completion_tokens"] == 0  # cached
    assert all(len(e["head"]["response"]) < 40 and "\nQ:" not in e["head"]["response"] for e in item["examples"])
