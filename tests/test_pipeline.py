"""The pipeline's settings: which stage trains with which config and KL reference, where the task's defaults apply,
and what `--smoke` replaces. Every setting resolves once, in `score_trl.stages.stage_configs`."""

import dataclasses
import logging
import warnings
from pathlib import Path

import pytest
from trl import ModelConfig

from score_trl import MultiTurnRLOOConfig, StageOneConfig, pipeline, run_inputs
from score_trl.pipeline import ScoreScriptArguments, each_warning_once, parse_args
from score_trl.stages import stage_configs
from score_trl.tasks import TASKS, TaskArguments
from tests.conftest import task_with_rows


EMBEDDED = str(Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "score" / "config_math.yaml")


def training_args(tmp_path, config_cls=MultiTurnRLOOConfig, **changes):
    values = dict(output_dir=str(tmp_path), num_generations=2, use_cpu=True, bf16=False, report_to="none")
    return config_cls(**{**values, **changes})


def configs(script, args, base="BASE", peft=False, task="embedded", **changes):
    """Each stage's config, by name, as a run derives them."""
    return {name: make() for name, make in stage_configs(script, args, TASKS[task], base, peft, **changes).items()}


class TestStageConfigs:
    def test_both_stages_each_get_their_own_kl_steps_and_returns(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage1_max_steps=7)
        args = training_args(tmp_path, max_steps=20, alpha=3.0, turn_discount=1.0, turn_weights=[2.0, 4.0])
        stages = configs(script, args)
        stage1, stage2 = stages["stage1"], stages["stage2"]
        assert type(stage1) is StageOneConfig and stage1.turn_betas == [0.1, 0.01] and stage1.beta == 0.1
        assert stage1.max_steps == 7 and stage1.output_dir.endswith("stage1") and not stage1.push_to_hub
        # alpha, turn_discount and turn_weights shape Stage II's returns; Stage I keeps the paper's
        assert (stage1.alpha, stage1.turn_discount, stage1.turn_weights) == (0.0, 0.0, [1.0, 1.0])
        assert type(stage2) is MultiTurnRLOOConfig and stage2.turn_betas == [0.01, 0.01] and stage2.max_steps == 20
        assert (stage2.alpha, stage2.turn_discount, stage2.turn_weights) == (3.0, 1.0, [2.0, 4.0])
        assert stage2.output_dir.endswith("stage2")

    def test_each_stage_takes_its_own_kl_field(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage1_turn_betas=[0.25, 0.01], stage2_turn_betas=[0.02, 0.03])
        stages = configs(script, training_args(tmp_path))
        assert stages["stage1"].turn_betas == [0.25, 0.01] and stages["stage1"].beta == 0.25
        assert stages["stage2"].turn_betas == [0.02, 0.03] and stages["stage2"].beta == 0.03

    @pytest.mark.parametrize(
        "reference,peft,expected", [("base", False, "BASE"), ("stage1", False, None), ("base", True, None)]
    )
    def test_stage_two_kl_reference(self, tmp_path, reference, peft, expected):
        script = ScoreScriptArguments(task="embedded", stage2_reference=reference)
        stage2 = configs(script, training_args(tmp_path), peft=peft)["stage2"]
        assert stage2.ref_model_name_or_path == expected and stage2.output_dir.endswith("stage2")

    def test_a_reference_the_user_set_is_kept(self, tmp_path):
        stages = configs(ScoreScriptArguments(task="embedded"), training_args(tmp_path, ref_model_name_or_path="MINE"))
        assert stages["stage2"].ref_model_name_or_path == "MINE"

    def test_stage_one_alone_takes_the_stage_one_settings(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage="1", stage1_max_steps=7, stage1_turn_betas=[0.25, 0.01])
        (stage1,) = configs(script, training_args(tmp_path, max_steps=20)).values()
        assert stage1.max_steps == 7 and stage1.turn_betas == [0.25, 0.01] and stage1.beta == 0.25
        assert stage1.output_dir == str(tmp_path)  # a single stage writes where it is told

    def test_stage_two_alone_takes_the_stage_two_settings(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage="2", stage2_turn_betas=[0.05, 0.05])
        (stage2,) = configs(script, training_args(tmp_path, max_steps=20)).values()
        assert type(stage2) is MultiTurnRLOOConfig and stage2.turn_betas == [0.05, 0.05] and stage2.max_steps == 20
        assert stage2.output_dir == str(tmp_path)

    def test_the_trainer_configs_turn_betas_is_refused_naming_the_stage_fields(self, tmp_path):
        with pytest.raises(ValueError, match=r"turn_betas=\[0\.3, 0\.01\].*stage1_turn_betas.*stage2_turn_betas"):
            configs(ScoreScriptArguments(task="embedded", stage="1"), training_args(tmp_path, turn_betas=[0.3, 0.01]))

    def test_a_stage_one_config_as_the_shared_one_is_refused(self, tmp_path):
        with pytest.raises(TypeError, match="one MultiTurnRLOOConfig"):
            configs(ScoreScriptArguments(task="embedded", stage="1"), training_args(tmp_path, StageOneConfig))

    def test_what_a_stage_leaves_unused_is_logged(self, tmp_path, caplog):
        caplog.set_level(logging.INFO, logger="score_trl.stages")
        args = training_args(tmp_path, alpha=3.0, turn_discount=0.5)
        configs(ScoreScriptArguments(task="embedded", stage="1"), args)
        assert "'alpha': 3.0" in caplog.text and "unused by stage '1'" in caplog.text
        caplog.clear()
        configs(ScoreScriptArguments(task="embedded"), args)
        assert "'turn_discount': 0.5" in caplog.text and "Stage I trains on the paper's returns" in caplog.text
        caplog.clear()
        configs(ScoreScriptArguments(task="embedded", stage="2", stage1_max_steps=3), args)
        assert "{'stage1_max_steps': 3} unused: stage '2' runs no Stage I" in caplog.text

    def test_the_tasks_instruction_and_answer_format_fill_only_what_is_unset(self, tmp_path):
        args = training_args(tmp_path)
        for config in configs(ScoreScriptArguments(task="code"), args, task="code").values():
            assert config.turn_instruction == TASKS["code"].instruction and config.answer_format == "code"
        args = training_args(tmp_path, turn_instruction="Mine.", answer_format="math")
        for config in configs(ScoreScriptArguments(task="code"), args, task="code").values():
            assert config.turn_instruction == "Mine." and config.answer_format == "math"
        assert (args.turn_instruction, args.answer_format) == ("Mine.", "math")

    def test_the_shared_config_is_never_changed(self, tmp_path):
        args = training_args(tmp_path, max_steps=20)
        before = dataclasses.asdict(args)
        configs(ScoreScriptArguments(task="embedded"), args, max_steps=3, model_init_kwargs={"dtype": "float32"})
        assert dataclasses.asdict(args) == before


class TestParseArgs:
    """One parse, into one config class, whatever the stage: no reading of the command line before TrlParser."""

    @pytest.mark.parametrize("stage", [["--stage", "1"], ["--stage=1"], ["--stage", "2"], ["--stage=both"], []])
    def test_every_stage_parses_the_shared_config(self, stage):
        script_args, args, _ = parse_args(args=["--config", EMBEDDED, *stage])
        assert type(args) is MultiTurnRLOOConfig and args.turn_betas == [0.01, 0.01]
        assert script_args.stage == (stage[-1].split("=")[-1] if stage else "both")

    def test_stage_one_from_the_embedded_recipe_gets_its_budget_and_kl(self):
        script_args, args, _ = parse_args(args=["--config", EMBEDDED, "--stage", "1"])
        (stage1,) = configs(script_args, args).values()
        assert type(stage1) is StageOneConfig and stage1.max_steps == 150 and stage1.turn_betas == [0.1, 0.01]

    def test_stage_in_the_recipe_decides_too(self, tmp_path):
        recipe = tmp_path / "stage1.yaml"
        recipe.write_text(Path(EMBEDDED).read_text() + "stage: '1'\n")
        assert parse_args(args=["--config", str(recipe)])[0].stage == "1"
        assert parse_args(args=["--config", str(recipe), "--stage", "2"])[0].stage == "2"

    def test_parsing_fills_nothing_in(self):
        _, args, _ = parse_args(args=["--config", EMBEDDED])
        assert args.turn_instruction is None and args.answer_format is None  # the stages fill them, once

    def test_an_empty_instruction_is_refused(self):
        with pytest.raises(ValueError, match="turn_instruction='' shows the model nothing"):
            parse_args(args=["--config", EMBEDDED, "--turn_instruction", ""])


class RecordingTrainer:
    """Stands in for a trainer: records the config it is built with."""

    built: list = []

    def __init__(self, model, reward_funcs, args, train_dataset, peft_config=None):
        RecordingTrainer.built.append((model, args))
        self.args, self.callbacks = args, []

    def add_callback(self, callback):
        self.callbacks.append(callback)

    def get_turn_instruction(self, example, turn, attempts=()):
        return f"row {example['answer']}"


class TestRun:
    @pytest.fixture
    def recorded(self, monkeypatch, tmp_path):
        """`run` with recording trainers and evaluations: what each stage and evaluation was given."""
        rows = [{"prompt": "p", "answer": "1"}]
        monkeypatch.setitem(TASKS, "math", task_with_rows("math", rows, rows))
        monkeypatch.setattr(RecordingTrainer, "built", [])
        monkeypatch.setattr(pipeline, "train_stage", lambda trainer: trainer.args.output_dir)
        monkeypatch.setattr(run_inputs, "check_loadable", lambda model_path: None)  # models named "BASE", "S1"
        evaluations = []

        def evaluate_checkpoint(model_path, rows, verifier, settings, **kwargs):
            evaluations.append((model_path, [settings.instruction_for(row, 2) for row in rows]))
            return {"n": 1}, []

        monkeypatch.setattr(pipeline, "evaluate_checkpoint", evaluate_checkpoint)
        monkeypatch.setattr(pipeline, "format_table", lambda results: "table")
        return RecordingTrainer.built, evaluations

    def test_what_the_user_set_reaches_the_trainers(self, tmp_path, recorded):
        built, evaluations = recorded
        user_kwargs = {"low_cpu_mem_usage": True, "device_map": "cpu", "revision": "v2"}
        args = training_args(tmp_path, model_init_kwargs=dict(user_kwargs), turn_instruction="Mine.", max_steps=5)
        model_args = ModelConfig(model_name_or_path="BASE", dtype="float32", attn_implementation="eager")
        pipeline.run(ScoreScriptArguments(task="math"), args, model_args, (RecordingTrainer, RecordingTrainer))
        assert [model for model, _ in built] == ["BASE", str(tmp_path / "stage1")]
        for _, stage_args in built:
            assert stage_args.model_init_kwargs == {**user_kwargs, "dtype": "float32", "attn_implementation": "eager"}
            assert stage_args.turn_instruction == "Mine." and stage_args.max_steps == 5
        # every evaluation, the base model's included, shows the instruction the trainer gives each row
        assert evaluations == [
            ("BASE", ["row 1"]),
            (str(tmp_path / "stage1"), ["row 1"]),
            (str(tmp_path / "stage2"), ["row 1"]),
        ]

    def test_a_model_setting_set_twice_differently_is_refused(self, tmp_path, recorded):
        args = training_args(tmp_path, model_init_kwargs={"dtype": "bfloat16"})
        model_args = ModelConfig(model_name_or_path="BASE", dtype="float16")
        with pytest.raises(ValueError, match="model_init_kwargs\\['dtype'\\]='bfloat16' conflicts with dtype"):
            pipeline.run(ScoreScriptArguments(task="math"), args, model_args, (RecordingTrainer, RecordingTrainer))

    def test_stage_two_alone_ignores_stage_one_settings(self, tmp_path, recorded):
        built, _ = recorded
        script = ScoreScriptArguments(task="math", stage="2", stage1_max_steps=3)
        pipeline.run(
            script,
            training_args(tmp_path, max_steps=5),
            ModelConfig(model_name_or_path="S1"),
            (None, RecordingTrainer),
        )
        assert len(built) == 1 and type(built[0][1]) is MultiTurnRLOOConfig and built[0][1].max_steps == 5

    def test_the_users_configs_are_read_never_changed(self, tmp_path, recorded):
        args = training_args(tmp_path, max_steps=5)
        model_args = ModelConfig(model_name_or_path="BASE", dtype="float32")
        before = (dataclasses.asdict(args), dataclasses.asdict(model_args))
        pipeline.run(ScoreScriptArguments(task="math"), args, model_args, (RecordingTrainer, RecordingTrainer))
        assert (dataclasses.asdict(args), dataclasses.asdict(model_args)) == before
        assert args.turn_instruction is None and args.model_init_kwargs is None

    def test_smoke_replaces_what_it_says_and_logs_each_value(self, tmp_path, recorded, caplog):
        built, _ = recorded
        caplog.set_level(logging.INFO, logger="score_trl.pipeline")
        args = training_args(tmp_path, max_steps=250, save_strategy="steps", save_steps=50)
        script = ScoreScriptArguments(task="math", stage1_max_steps=150, smoke=True)
        pipeline.run(script, args, ModelConfig(model_name_or_path="BASE"), (RecordingTrainer, RecordingTrainer))
        assert [(config.max_steps, config.save_strategy) for _, config in built] == [(3, "no"), (3, "no")]
        for line in ("max_steps 250 -> 3", "stage1_max_steps 150 -> 3", "save_strategy steps -> no"):
            assert f"--smoke: {line}" in caplog.text
        assert script.stage1_max_steps == 150 and args.max_steps == 250  # replaced in the run, not in the caller's


class TestTaskArguments:
    def test_old_embedded_dataset_name_says_what_to_set(self):
        with pytest.raises(ValueError, match="set `task: embedded`"):
            TaskArguments(dataset_name="embedded")

    def test_unknown_task_lists_the_registered_ones(self):
        with pytest.raises(ValueError, match="'code', 'embedded', 'math'"):
            TaskArguments(task="chess")


class TestWarnings:
    def test_each_distinct_warning_is_shown_once(self):
        with warnings.catch_warnings(record=True) as caught, each_warning_once():
            warnings.simplefilter("default")
            for _ in range(8):
                with warnings.catch_warnings():  # as TRL does while generating: Python then forgets what it showed
                    pass
                warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
                warnings.warn("another one", FutureWarning, stacklevel=1)
            warnings.warn("ignored", DeprecationWarning, stacklevel=1)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.warn("still ignored", DeprecationWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == [
            "`is_gradient_checkpointing` is deprecated",
            "another one",
            "ignored",
        ]

    def test_without_it_python_repeats_them(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for _ in range(3):
                with warnings.catch_warnings():
                    pass
                warnings.warn("repeated", FutureWarning, stacklevel=1)
        assert len(caught) == 3  # the reason `each_warning_once` exists: a TRL or Python change would show here


def test_the_whole_pipeline_in_process_on_a_tiny_model(tmp_path, tiny_model_path, monkeypatch):
    """Both stages with the real trainers, a step each: the fast cover of the example's smoke runs (slow tests)."""
    import torch

    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(6)]
    monkeypatch.setitem(TASKS, "math", task_with_rows("math", rows, rows[:2]))
    args = training_args(
        tmp_path, num_generations=3, per_device_train_batch_size=6, max_completion_length=6, max_steps=1,
        save_strategy="no", activation_checkpointing=False,
    )  # fmt: skip
    script = ScoreScriptArguments(task="math", eval_max_new_tokens=4, eval_batch_size=2)
    results = pipeline.run(script, args, ModelConfig(model_name_or_path=tiny_model_path))
    assert list(results) == ["base", "stage I", "SCoRe"] and all(r["n"] == 2 for r in results.values())
    stage1 = torch.load(tmp_path / "stage1" / "training_args.bin", weights_only=False)
    stage2 = torch.load(tmp_path / "stage2" / "training_args.bin", weights_only=False)
    assert type(stage1) is StageOneConfig and stage1.turn_betas == [0.1, 0.01]
    assert type(stage2) is MultiTurnRLOOConfig and stage2.ref_model_name_or_path == tiny_model_path
    assert (tmp_path / "stage2" / "model.safetensors").exists()
    for name in ("base", "stage1", "final"):
        assert len((tmp_path / f"eval_{name}_traces.jsonl").read_text().splitlines()) == 2
