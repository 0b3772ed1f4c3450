import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

from score_trl import MultiTurnRLOOConfig, StageOneConfig
from tests.conftest import free_port


ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("config_*.yaml"))


def _parse(argv, baseline=False):
    from score_trl.baselines.script import parse_baseline_args
    from score_trl.pipeline import parse_args

    return parse_baseline_args(args=argv) if baseline else parse_args(args=argv)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if "/score/" not in r])
def test_every_baseline_recipe_parses(recipe):
    args, sft_args, model_args = _parse(["--config", recipe], baseline=True)
    assert args.samples_per_problem >= 1 and sft_args.num_train_epochs == 1 and model_args.model_name_or_path


@pytest.mark.parametrize("recipe", [r for r in RECIPES if "/score/" in r])
def test_every_score_recipe_parses(recipe):
    # GPU recipes ask for bf16, which a CPU machine refuses when the config is built: override just that.
    script_args, training_args, model_args = _parse(["--config", recipe, "--bf16", "false", "--use_cpu", "true"])
    assert training_args.num_generations >= 2 and len(training_args.turn_betas) == training_args.num_turns
    assert script_args.stage in {"1", "2", "both"}
    if script_args.stage == "1":  # Stage I: a StageOneConfig, strong KL on turn 1
        assert type(training_args) is StageOneConfig and training_args.turn_betas[0] > training_args.turn_betas[1]
    else:
        assert type(training_args) is MultiTurnRLOOConfig
    assert model_args.model_name_or_path


def test_recipe_with_an_unknown_field_names_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("use_cpu: true\nbf16: false\nturn_betaz: [0.1, 0.01]\n")
    with pytest.raises(ValueError, match="turn_betaz"):
        _parse(["--config", str(bad)])


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED")])
def test_accelerate_configs(name, kind):
    config = yaml.safe_load((ROOT / "recipes" / "accelerate_configs" / f"{name}.yaml").read_text())
    assert config["distributed_type"] == kind
    if kind == "DEEPSPEED":
        assert config["deepspeed_config"]["zero_stage"] == int(name[-1])


def test_push_to_hub_writes_a_score_model_card(tmp_path, tiny_model_path, monkeypatch):
    """Everything up to the upload runs; only the two network calls are stubbed."""
    import transformers.trainer

    from score_trl import MultiTurnRLOOTrainer
    from tests.test_trainers import make_args, varied_reward

    uploads = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploads.append((repo_id, {p.name: p.read_bytes() for p in Path(folder_path).iterdir() if p.is_file()}))

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FakeApi())
    rows = [{"prompt": [{"role": "user", "content": f"{i} + 1?"}]} for i in range(6)]
    args = make_args(tmp_path, max_steps=1, hub_model_id="someone/score-tiny")
    trainer = MultiTurnRLOOTrainer(tiny_model_path, varied_reward, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.model_card_metrics = {"base": {"acc_t1": 0.25, "acc_t2": 0.2}, "SCoRe": {"acc_t1": 0.3, "acc_t2": 0.45}}
    trainer.push_to_hub()
    repo_id, files = uploads[-1]
    assert repo_id == "someone/score-tiny"
    assert "model.safetensors" in files and "tokenizer.json" in files
    card = files["README.md"].decode()
    assert "2409.12917" in card and "Training Language Models to Self-Correct" in card
    assert "| SCoRe | 0.300 | 0.450 |" in card


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
