"""StageOneTrainer and MultiTurnRLOOTrainer under DeepSpeed ZeRO-2 and ZeRO-3 on CPU, launched as docs/recipes.md says.

Each test launches tests/deepspeed_train.py (both trainers, 3 steps each, in one process as the pipeline runs them)
with `accelerate launch --config_file recipes/accelerate_configs/zero{2,3}.yaml --num_processes N` and compares it
with the same script run without DeepSpeed: `torchrun` (DDP) for two processes, plain `python` for one. The slow
tests run the docs' own CPU lines on examples/score_math.py.

DeepSpeed picks its CPU accelerator with gloo by itself; on first use it compiles a shared-memory communication op with
the C++ compiler and ninja (about 30 s), cached by torch under ~/.cache/torch_extensions (or TORCH_EXTENSIONS_DIR), so
later runs on the machine reuse it.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import free_port


ROOT = Path(__file__).parents[1]
SCRIPT = Path(__file__).with_name("deepspeed_train.py")
TRAINERS = ("stage1", "stage2")
STEPS = 3  # deepspeed_train.py's max_steps, and --smoke's
EXAMPLE_LINE = "examples/score_math.py --smoke"
ZERO_OPTIMIZERS = {
    2: "deepspeed.runtime.zero.stage_1_and_2.DeepSpeedZeroOptimizer",
    3: "deepspeed.runtime.zero.stage3.DeepSpeedZeroOptimizer_Stage3",
}
ENGINE = "deepspeed.runtime.engine.DeepSpeedEngine"
# Measured: DeepSpeed's final weights differ from the same run without it by at most 2.1e-5 (ZeRO-2, one process;
# 3e-6 with two), while 3 steps at lr 0.05 move every parameter by 0.04-0.1. The gap is float32 summation order (flat
# ZeRO buffers vs DDP buckets, the ZeRO-3 gather): losses, KLs and gradient norms agree within 6e-6 relative, and
# Adam's division by sqrt(v) amplifies it in the weights. 1e-4 leaves 5x margin and is 400x below the smallest
# parameter's move: a lost all-reduce, a skipped or doubled step or another batch shows as 1e-2 or more (two
# processes vs one, same seed: 0.14).
WEIGHT_TOLERANCE = 1e-4
METRIC_RTOL = 1e-4  # metrics were measured within 6e-6 relative; rewards and accuracies are equal (same samples)

requires_deepspeed = [
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed"),
    pytest.mark.skipif(
        shutil.which(os.environ.get("CXX", "c++")) is None,
        reason="no C++ compiler: DeepSpeed compiles its CPU communication op on first use (apt-get install g++)",
    ),
]


def launch_flags(zero_stage: int, num_processes: int) -> list[str]:
    """`accelerate launch` flags as docs/recipes.md gives them for DeepSpeed on a CPU."""
    config = f"recipes/accelerate_configs/zero{zero_stage}.yaml"
    return ["--config_file", config, "--num_processes", str(num_processes)]


def _run(command: list[str], out: Path, model_path: str) -> Path:
    _check([*command, str(SCRIPT), model_path, str(out)])
    return out


def _check(command: list[str], **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    # cwd: the configs' paths in the docs are relative to the repository root
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _load(out: Path, name: str, num_processes: int) -> tuple[list[dict], list[dict[str, torch.Tensor]]]:
    records = [json.loads((out / name / f"rank{r}.json").read_text()) for r in range(num_processes)]
    weights = [torch.load(out / name / f"rank{r}.pt") for r in range(num_processes)]
    return records, weights


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model_path):
    """The same script without DeepSpeed, run once per process count: DDP under torchrun, or plain python."""
    runs = {}

    def get(num_processes: int) -> Path:
        if num_processes not in runs:
            command = [sys.executable]
            if num_processes > 1:
                command += ["-m", "torch.distributed.run", "--nproc_per_node", str(num_processes)]
                command += ["--master_port", str(free_port())]
            runs[num_processes] = _run(command, tmp_path_factory.mktemp(f"reference{num_processes}"), tiny_model_path)
        return runs[num_processes]

    return get


@pytest.mark.parametrize(
    "zero_stage,num_processes",
    [
        pytest.param(2, 2, marks=requires_deepspeed),
        pytest.param(3, 2, marks=requires_deepspeed),
        pytest.param(2, 1, marks=[*requires_deepspeed, pytest.mark.slow]),
        pytest.param(3, 1, marks=[*requires_deepspeed, pytest.mark.slow]),
    ],
)
def test_zero_trains_as_without_deepspeed(tmp_path, tiny_model_path, reference_run, zero_stage, num_processes):
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch_flags(zero_stage, num_processes)]
    out = _run([*command, "--main_process_port", str(free_port())], tmp_path, tiny_model_path)
    reference = reference_run(num_processes)
    initial = load_file(Path(tiny_model_path) / "model.safetensors")
    for name in TRAINERS:
        records, weights = _load(out, name, num_processes)
        ref_records, ref_weights = _load(reference, name, num_processes)
        for record in records:
            assert record["world_size"] == num_processes and record["global_step"] == STEPS, record
            # DeepSpeed's engine and ZeRO optimizer train the model, and the reference model is an engine too
            # (sharded under ZeRO-3, whole under ZeRO-2)
            assert ENGINE in record["engine"] and record["zero_stage"] == zero_stage, record["engine"]
            assert record["optimizer"] == ZERO_OPTIMIZERS[zero_stage]
            assert ENGINE in record["ref_model"] and record["ref_zero_stage"] == (3 if zero_stage == 3 else 0)
        assert not ref_records[0]["deepspeed"]

        assert set(weights[0]) == set(ref_weights[0]) == set(initial)
        for param, value in weights[0].items():
            assert (value - initial[param]).abs().max() > 0.01, f"{name}: {param} did not move"
            for rank in range(1, num_processes):
                assert torch.equal(weights[rank][param], value), f"{name}: ranks 0 and {rank} differ on {param}"
            gap = (value - ref_weights[0][param]).abs().max().item()
            assert gap < WEIGHT_TOLERANCE, f"{name}: {param} differs from the run without DeepSpeed by {gap:.2e}"

        logs, ref_logs = records[0]["logs"], ref_records[0]["logs"]
        assert len(logs) == len(ref_logs) == STEPS
        assert max(log["turn1/kl"] for log in logs) > 0 and max(log["turn2/kl"] for log in logs) > 0
        for log, ref_log in zip(logs, ref_logs, strict=True):
            for key in ("turn1/kl", "turn2/kl", "loss", "turn1/reward", "turn2/reward", "self_correction/delta"):
                assert log[key] == pytest.approx(ref_log[key], rel=METRIC_RTOL, abs=1e-9), (name, key)


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_docs_give_the_launch_line_the_tests_run(zero_stage):
    docs = (ROOT / "docs" / "recipes.md").read_text()
    assert f"accelerate launch {' '.join(launch_flags(zero_stage, 2))} {EXAMPLE_LINE}" in docs


@pytest.fixture(scope="module")
def example_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("score_trl_cache")  # the embedded base model, pretrained once for both stages


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [pytest.param(stage, marks=requires_deepspeed) for stage in (2, 3)])
def test_docs_cpu_line_runs_the_example(tmp_path, example_cache, zero_stage):
    """The docs' CPU line, whole: the base model built on the main process and every evaluation run outside the
    engine (whole models, also under ZeRO-3), then Stage I and Stage II trained one after the other in one process."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch_flags(zero_stage, 2)]
    command += ["--main_process_port", str(free_port()), *EXAMPLE_LINE.split(), "--output_dir", str(out)]
    result = _check(command, SCORE_TRL_CACHE=str(example_cache))
    assert "process 0 of 2" in result.stderr and "process 1 of 2" in result.stderr
    assert set(json.loads((out / "results.json").read_text())) == {"base", "stage I", "SCoRe"}
    for stage in ("stage1", "stage2"):
        assert json.loads((out / stage / "trainer_state.json").read_text())["global_step"] == STEPS
        # under ZeRO-3 the saved weights are gathered from the shards (the configs' zero3_save_16bit_model)
        saved = load_file(out / stage / "model.safetensors")
        assert all(tensor.dim() > 0 and tensor.numel() > 0 for tensor in saved.values())
