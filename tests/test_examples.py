"""The example scripts as a user runs them: one-line errors, and (slow) the whole pipeline in one and two processes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port


ROOT = Path(__file__).resolve().parents[1]


def test_unreachable_hub_model_points_to_the_embedded_default(tmp_path, smoke_cache):
    command = [
        sys.executable, str(ROOT / "examples" / "score_math.py"), "--smoke", "--output_dir", str(tmp_path),
        "--model_name_or_path", "someone/not-a-cached-model",
    ]  # fmt: skip
    env = {**_smoke_env(smoke_cache), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "someone/not-a-cached-model" in result.stderr and "embedded default" in result.stderr


def _smoke_env(cache):
    return {**os.environ, "OMP_NUM_THREADS": "1", "SCORE_TRL_CACHE": str(cache), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("score_trl_cache")


@pytest.mark.slow  # about a minute; tests/test_pipeline.py runs the same pipeline in process on a tiny model
def test_score_math_smoke_single_process(tmp_path, smoke_cache):
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "examples" / "score_math.py"), "--smoke", "--output_dir", str(out)]
    result = subprocess.run(command, env=_smoke_env(smoke_cache), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    warned = re.findall(r"\w+Warning: .*", result.stderr.replace("\r", "\n"))
    assert warned and len(warned) == len(set(warned)), warned  # each distinct warning at most once
    assert "| SCoRe |" in result.stdout and "| base |" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"base", "stage I", "SCoRe"}
    assert results["base"]["n"] == 16
    assert (out / "stage2" / "model.safetensors").exists()
    assert (out / "eval_final_traces.jsonl").read_text().count("\n") == 16


@pytest.mark.slow  # tests/test_distributed.py trains with two processes in the default suite
def test_score_math_smoke_two_processes(tmp_path, smoke_cache):
    """The launch line the docs give for two data-parallel CPU processes really starts two ranks."""
    out = tmp_path / "out"
    command = [
        *[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())],
        *[str(ROOT / "examples" / "score_math.py"), "--smoke", "--output_dir", str(out)],
    ]
    result = subprocess.run(command, env=_smoke_env(smoke_cache), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "stage2" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert "process 0 of 2" in result.stderr and "process 1 of 2" in result.stderr
    assert "| SCoRe |" in result.stdout
