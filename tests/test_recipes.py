"""The recipes: every one parses into the config its stage picks, and the accelerate configs launch what they say."""

from pathlib import Path

import pytest
import yaml

from score_trl import MultiTurnRLOOConfig, StageOneConfig


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
