"""The recipes: every one parses, each stage's config is derived from it as written, and the accelerate configs launch
what they say."""

import dataclasses
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
def test_every_score_recipe_parses_and_derives_its_stages(recipe):
    from score_trl.stages import stage_configs
    from score_trl.tasks import get_task

    # GPU recipes ask for bf16, which a CPU machine refuses when the config is built: override just that.
    script_args, training_args, model_args = _parse(["--config", recipe, "--bf16", "false", "--use_cpu", "true"])
    assert type(training_args) is MultiTurnRLOOConfig and training_args.num_generations >= 2  # one parse, one class
    assert model_args.model_name_or_path and script_args.stage in {"1", "2", "both"}
    stages = stage_configs(script_args, training_args, get_task(script_args.task), model_args.model_name_or_path)
    assert list(stages) == {"1": ["stage1"], "2": ["stage2"], "both": ["stage1", "stage2"]}[script_args.stage]
    if "stage1" in stages:  # Stage I: a StageOneConfig, strong KL on turn 1
        stage1 = stages["stage1"]()
        assert type(stage1) is StageOneConfig and stage1.turn_betas[0] > stage1.turn_betas[1]


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


# Every score recipe's trainer, built from the recipe as written with only the model swapped for a tiny one of the same
# family (and output paths under tmp). What this machine cannot run is overridden here, one field at a time, and
# `test_a_field_this_machine_may_lack` checks each such field up to the point it acts, skipping with the reason.
SCORE_RECIPES = [r for r in RECIPES if "/score/" in r]
NEEDS_SOMETHING = ("bf16", "use_vllm", "report_to", "load_in_4bit", "load_in_8bit")


def _values(recipe: str) -> dict:
    return yaml.safe_load((ROOT / recipe).read_text())


def _family(recipe: str) -> str:
    """The tiny model's architecture for a recipe's model: Qwen2 for the Qwen recipes, Llama for SmolLM2 and the
    embedded base (a Llama)."""
    return "qwen2" if "/Qwen" in recipe else "llama"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    from score_trl.tiny_model import save_tiny_model

    return {
        arch: save_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), architecture=arch)
        for arch in ("qwen2", "llama")
    }


def _absent(field: str, values: dict) -> str | None:
    """Why this machine cannot run the recipe's `field` as written, or None when it can."""
    import importlib.util

    import torch
    from transformers.utils import is_torch_bf16_available_on_device

    gpu = torch.cuda.is_available()
    missing = {name: importlib.util.find_spec(name) is None for name in ("vllm", "tensorboard", "bitsandbytes")}
    lacking = {
        "bf16": (
            not gpu and not is_torch_bf16_available_on_device("cpu"),
            "bf16: no CUDA GPU, and this CPU has no bf16",
        ),
        "use_vllm": (
            not gpu or missing["vllm"],
            "use_vllm: vLLM needs a CUDA GPU and `pip install 'score-trl[vllm]'`",
        ),
        "report_to": (missing["tensorboard"], "report_to tensorboard: `pip install 'score-trl[tensorboard]'`"),
    }
    for flag in ("load_in_4bit", "load_in_8bit"):
        why = f"{flag}: bitsandbytes needs a CUDA GPU and `pip install 'score-trl[qlora]'`"
        lacking[flag] = (not gpu or missing["bitsandbytes"], why)
    value = values.get(field)
    asked = "tensorboard" in (value or []) if field == "report_to" else bool(value)
    lacks, why = lacking[field]
    return why if asked and lacks else None


# The value a field is built with where it cannot act here, and the error it gives instead (checked below).
STAND_INS = {
    "bf16": "false",
    "use_vllm": "false",
    "report_to": "none",
    "load_in_4bit": "false",
    "load_in_8bit": "false",
}
REFUSALS = {
    "bf16": "bf16",
    "use_vllm": "vLLM is not available",
    "report_to": "[Tt]ensor[Bb]oard",
    "load_in_4bit": "load_in_4bit=True needs",
    "load_in_8bit": "load_in_8bit=True needs",
}


def _argv(recipe: str, model: str, output_root: Path, keep: tuple[str, ...] = (), extra: tuple[str, ...] = ()):
    """The command line that runs `recipe` on the tiny `model`: its output under `output_root`, the fields this machine
    lacks replaced by their stand-ins unless named in `keep`."""
    import torch

    values = _values(recipe)
    argv = ["--config", recipe, "--model_name_or_path", model, "--output_dir", str(output_root / values["output_dir"])]
    if values.get("ref_model_name_or_path"):  # the base model the KL stays with: the tiny base
        argv += ["--ref_model_name_or_path", model]
    if not torch.cuda.is_available() and values.get("bf16"):
        argv += ["--use_cpu", "true"]  # a machine fact, not a recipe field: TrainingArguments refuses bf16 without it
    for field in NEEDS_SOMETHING:
        if field not in keep and _absent(field, values):
            argv += [f"--{field}", STAND_INS[field]]
    return [*argv, *extra]


def _trainers(argv: list[str], model: str):
    """Each stage's trainer as `score_trl.pipeline.run` builds it, on a 16-row data set (a generation batch of every recipe) with the task's columns."""
    from datasets import Dataset
    from trl import get_peft_config

    from score_trl import MultiTurnRLOOTrainer, StageOneTrainer
    from score_trl.pipeline import parse_args
    from score_trl.stages import build_trainer, model_init_kwargs, quantization_config, stage_configs
    from score_trl.tasks import get_task

    script_args, args, model_args = parse_args(args=argv)
    peft_config = get_peft_config(model_args)
    quantization = quantization_config(model_args, peft_config)
    task = get_task(script_args.task)
    gold = {  # the columns the task's reward reads
        "code": lambda i: {"test_list": [f"assert add_two({i}) == {i + 2}"]},
    }.get(script_args.task, lambda i: {"answer": str(i + 2)})
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 2?"}], **gold(i)} for i in range(16)]
    classes = {"stage1": StageOneTrainer, "stage2": MultiTurnRLOOTrainer}
    model_path = model
    kwargs = model_init_kwargs(args, model_args)
    stages = stage_configs(script_args, args, task, model, peft_config is not None, model_init_kwargs=kwargs)
    for name, make_config in stages.items():
        trainer = build_trainer(
            classes[name], model_path, make_config(), Dataset.from_list(rows), task.reward, peft_config, quantization
        )
        model_path = yield name, trainer, model_args
        model_path = model_path or model


def _as_written(trainer, values: dict) -> None:
    """The trainer runs with the recipe's values: every trainer-config field the recipe sets, each stage's own fields
    (`stage1_*` for Stage I, `stage2_*` for Stage II), and its model fields."""
    import torch
    from accelerate.utils import is_peft_model

    from score_trl.stages import STAGE_TWO_RETURNS

    stage = "stage1" if isinstance(trainer.args, StageOneConfig) else "stage2"
    if f"{stage}_turn_betas" in values:
        assert trainer.args.turn_betas == values[f"{stage}_turn_betas"]
    if stage == "stage1" and "stage1_max_steps" in values:
        assert trainer.args.max_steps == values["stage1_max_steps"]
    overridden = {"output_dir", "model_name_or_path", "ref_model_name_or_path", *STAND_INS}
    own = ("max_steps",) + (STAGE_TWO_RETURNS if stage == "stage1" else ())  # Stage I's own, checked above
    config_fields = {f.name for f in dataclasses.fields(trainer.args)}
    for key, value in values.items():
        if key in overridden or key not in config_fields or key in own:
            continue
        actual = getattr(trainer.args, key)
        if key == "report_to":
            value = [value] if isinstance(value, str) else value
        assert actual == value or str(actual) == str(value) or getattr(actual, "value", None) == value, (key, actual)
    if values.get("dtype"):
        assert trainer.model.dtype == getattr(torch, values["dtype"])
    if values.get("use_peft"):
        assert is_peft_model(trainer.model)
        assert trainer.model.peft_config["default"].r == values["lora_r"]
        targets = values["lora_target_modules"]
        if targets == "all-linear":  # peft resolves it to every linear layer but the output head
            inner = trainer.model.base_model.model
            linear = {n.removesuffix(".base_layer") for n, m in inner.named_modules() if type(m) is torch.nn.Linear}
            linear = {n for n in linear if ".lora_" not in n}  # the adapters' own A and B matrices
            adapted = {n for n, m in inner.named_modules() if hasattr(m, "lora_A")}
            assert adapted == linear - {"lm_head"} and len(adapted) > 4, adapted
        else:
            assert set(trainer.model.peft_config["default"].target_modules) == set(targets)


@pytest.mark.parametrize("recipe", SCORE_RECIPES)
def test_every_score_recipe_builds_its_trainer(recipe, tiny_models, tmp_path):
    values = _values(recipe)
    model = tiny_models[_family(recipe)]
    stages = _trainers(_argv(recipe, model, tmp_path), model)
    built = []
    for name, trainer, _ in stages:
        _as_written(trainer, values)
        built.append(name)
    assert built == {"1": ["stage1"], "2": ["stage2"], "both": ["stage1", "stage2"]}[str(values.get("stage", "both"))]


@pytest.mark.parametrize(
    "recipe,field",
    [(r, f) for r in SCORE_RECIPES for f in NEEDS_SOMETHING if _values(r).get(f) not in (None, False, "none", [])],
)
def test_a_field_this_machine_may_lack(recipe, field, tiny_models, tmp_path):
    """The field as written: it acts where this machine has what it needs; elsewhere it fails where it would act,
    with the error that names what to install or change, and the test skips saying why."""
    values = _values(recipe)
    model = tiny_models[_family(recipe)]
    argv = _argv(recipe, model, tmp_path, keep=(field,))
    why = _absent(field, values)
    if why is None:
        for _, trainer, _ in _trainers(argv, model):
            if field == "report_to":
                assert any("TensorBoard" in type(c).__name__ for c in trainer.callback_handler.callbacks)
            elif field == "use_vllm":
                assert trainer.use_vllm
            elif field.startswith("load_in_"):
                assert getattr(trainer.model, f"is_loaded_in_{field[8:]}", False)
            else:
                assert getattr(trainer.args, field) == values[field]
        return
    with pytest.raises((ImportError, ValueError, RuntimeError), match=REFUSALS[field]):
        for _ in _trainers(argv, model):
            pass
    pytest.skip(f"{why} (checked up to where it acts: the refusal names it)")


def _chains() -> list[tuple[str, str]]:
    return [
        (r, r.replace("config_stage1_", "config_stage2_"))
        for r in SCORE_RECIPES
        if "config_stage1_" in r and r.replace("config_stage1_", "config_stage2_") in SCORE_RECIPES
    ]


def test_every_stage1_recipe_has_its_stage2():
    assert len(_chains()) == len([r for r in SCORE_RECIPES if "config_stage1_" in r]) >= 6


@pytest.mark.parametrize("stage1,stage2", _chains())
def test_chained_recipes_train_a_step_each(stage1, stage2, tiny_models, tmp_path):
    """Stage I's recipe trains a step and saves; Stage II's recipe starts from the path it names, which must be what
    Stage I wrote (its output_dir, or `<output_dir>/merged` for LoRA), and trains a step."""
    import shutil

    from score_trl.stages import train_stage

    if _values(stage1)["task"] == "code" and shutil.which("bwrap") is None:
        pytest.skip("the code reward runs model code in bubblewrap, which is not installed (docs/rewards.md)")
    model = tiny_models[_family(stage1)]
    one_step = ("--max_steps", "1", "--max_completion_length", "8", "--save_strategy", "no", "--logging_steps", "1")
    for _, trainer, _ in _trainers(_argv(stage1, model, tmp_path, extra=one_step), model):
        written = train_stage(trainer)
        assert trainer.state.global_step == 1 and "train_loss" in trainer.state.log_history[-1]
    named = _values(stage2)["model_name_or_path"]
    assert str(tmp_path / named) == written, f"{stage2} starts from {named}; {stage1} writes {written}"
    argv = _argv(stage2, model, tmp_path, extra=one_step)
    argv[argv.index("--model_name_or_path") + 1] = written
    for _, trainer, _ in _trainers(argv, written):
        # The recipes' first step has a warm-up learning rate of 0: that the step ran and logged is what is checked.
        assert trainer.model.config._name_or_path == written
        # The KL reference: the base model where the recipe names it (the paper's), else, with LoRA, the Stage I
        # model with the new adapter disabled (TRL builds no reference model then).
        if _values(stage2).get("ref_model_name_or_path"):
            assert trainer.ref_model.config._name_or_path == model
        else:
            assert _values(stage2)["use_peft"] and trainer.ref_model is None
        train_stage(trainer)
        assert trainer.state.global_step == 1 and "train_loss" in trainer.state.log_history[-1]


class TestQuantization:
    """`load_in_4bit` / `load_in_8bit` reach the trainer as TRL's scripts pass them, or are refused saying why."""

    def _model_args(self, **values):
        from trl import ModelConfig

        return ModelConfig(model_name_or_path="m", dtype="bfloat16", **values)

    def test_refused_without_lora(self):
        from score_trl.stages import quantization_config

        with pytest.raises(ValueError, match="load_in_4bit=True trains through LoRA adapters only: set use_peft"):
            quantization_config(self._model_args(load_in_4bit=True), peft_config=None)

    def test_refused_without_a_gpu(self, monkeypatch):
        import torch

        from score_trl.stages import quantization_config

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ValueError, match="load_in_8bit=True needs a CUDA GPU"):
            quantization_config(self._model_args(load_in_8bit=True), peft_config=object())

    def test_refused_without_bitsandbytes(self, monkeypatch):
        import importlib.util

        import torch

        from score_trl.stages import quantization_config

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
        with pytest.raises(ValueError, match=r"needs bitsandbytes: pip install 'score-trl\[qlora\]'"):
            quantization_config(self._model_args(load_in_4bit=True), peft_config=object())

    def test_what_trl_builds_reaches_the_trainer(self, monkeypatch):
        import importlib.util

        import torch

        from score_trl import stages

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object())
        args = self._model_args(load_in_4bit=True, bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
        config = stages.quantization_config(args, peft_config=object())
        assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
        assert config.bnb_4bit_compute_dtype == torch.bfloat16
        assert stages.quantization_config(self._model_args(), peft_config=None) is None

        seen = {}

        class Recording:
            def __init__(self, model, reward, **kwargs):
                seen.update(kwargs)

        stages.build_trainer(Recording, "m", None, None, None, peft_config=object(), quantization_config=config)
        assert seen["quantization_config"] is config
