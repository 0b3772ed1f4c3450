"""The pipeline's settings: which stage trains with which config and KL reference, and where task defaults apply."""

import dataclasses
import warnings
from pathlib import Path

import pytest
from datasets import Dataset
from trl import ModelConfig

from score_trl import MultiTurnRLOOConfig, StageOneConfig, pipeline
from score_trl.pipeline import ScoreScriptArguments, _stage1_config, _stage2_config, each_warning_once, parse_args
from score_trl.tasks import TASKS, TaskArguments


EMBEDDED = str(Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "score" / "config_math.yaml")


def training_args(tmp_path, config_cls=MultiTurnRLOOConfig, **changes):
    values = dict(output_dir=str(tmp_path), num_generations=2, use_cpu=True, bf16=False, report_to="none")
    return config_cls(**{**values, **changes})


class TestStageConfigs:
    def test_both_stages_stage_one_gets_its_own_kl_and_steps(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage1_max_steps=7)
        stage1 = _stage1_config(script, training_args(tmp_path, max_steps=20))
        assert isinstance(stage1, StageOneConfig) and stage1.turn_betas == [0.1, 0.01] and stage1.beta == 0.1
        assert stage1.max_steps == 7 and stage1.output_dir.endswith("stage1") and not stage1.push_to_hub
        # Stage II's return settings stay Stage II's: Stage I keeps the paper's returns
        stage2_args = training_args(tmp_path, turn_discount=1.0, turn_weights=[2.0, 4.0])
        stage1 = _stage1_config(script, stage2_args)
        assert (stage1.turn_discount, stage1.turn_weights) == (0.0, [1.0, 1.0])
        assert _stage2_config(script, stage2_args, "BASE", False).turn_weights == [2.0, 4.0]

    @pytest.mark.parametrize(
        "reference,peft,expected", [("base", False, "BASE"), ("stage1", False, None), ("base", True, None)]
    )
    def test_stage_two_kl_reference(self, tmp_path, reference, peft, expected):
        script = ScoreScriptArguments(task="embedded", stage2_reference=reference)
        stage2 = _stage2_config(script, training_args(tmp_path), "BASE", peft)
        assert stage2.ref_model_name_or_path == expected and stage2.output_dir.endswith("stage2")

    def test_a_reference_the_user_set_is_kept(self, tmp_path):
        stage2 = _stage2_config(
            ScoreScriptArguments(task="embedded"),
            training_args(tmp_path, ref_model_name_or_path="MINE"),
            "BASE",
            False,
        )
        assert stage2.ref_model_name_or_path == "MINE"

    def test_stage_one_alone_takes_the_stage_one_settings(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage="1", stage1_max_steps=7, stage1_turn_betas=[0.25, 0.01])
        stage1 = _stage1_config(script, training_args(tmp_path, StageOneConfig, max_steps=20))
        assert stage1.max_steps == 7 and stage1.turn_betas == [0.25, 0.01] and stage1.beta == 0.25
        assert stage1.output_dir == str(tmp_path)  # a single stage writes where it is told

    def test_stage_one_kl_set_twice_differently_is_refused(self, tmp_path):
        script = ScoreScriptArguments(task="embedded", stage="1", stage1_turn_betas=[0.25, 0.01])
        with pytest.raises(ValueError, match="set one of them"):
            _stage1_config(script, training_args(tmp_path, StageOneConfig, turn_betas=[0.3, 0.01]))

    def test_stage_one_alone_refuses_stage_two_kl(self, tmp_path):
        with pytest.raises(TypeError, match="StageOneConfig"):
            _stage1_config(ScoreScriptArguments(task="embedded", stage="1"), training_args(tmp_path))


class TestParseArgs:
    """The stage decides the config class before parsing."""

    def test_stage_one_parses_stage_one_config(self):
        script_args, args, _ = parse_args(args=["--config", EMBEDDED, "--stage", "1"])
        assert type(args) is StageOneConfig and args.turn_betas[0] > args.turn_betas[1] == 0.01
        stage1 = _stage1_config(script_args, args)  # the recipe's Stage I budget, as with both stages
        assert stage1.max_steps == 150 and stage1.turn_betas == args.turn_betas

    @pytest.mark.parametrize("stage", [["--stage", "2"], ["--stage=both"], []])
    def test_other_stages_parse_stage_two_config(self, stage):
        script_args, args, _ = parse_args(args=["--config", EMBEDDED, *stage])
        assert type(args) is MultiTurnRLOOConfig and args.turn_betas == [0.01, 0.01]

    def test_stage_in_the_recipe_decides_too(self, tmp_path):
        recipe = tmp_path / "stage1.yaml"
        recipe.write_text(Path(EMBEDDED).read_text() + "stage: '1'\n")
        assert type(parse_args(args=["--config", str(recipe)])[1]) is StageOneConfig
        assert type(parse_args(args=["--config", str(recipe), "--stage", "2"])[1]) is MultiTurnRLOOConfig

    def test_the_task_instruction_fills_only_an_unset_one(self):
        _, args, _ = parse_args(args=["--config", EMBEDDED])
        assert args.turn_instruction == TASKS["embedded"].instruction
        _, args, _ = parse_args(args=["--config", EMBEDDED, "--turn_instruction", "Mine."])
        assert args.turn_instruction == "Mine."


class RecordingTrainer:
    """Stands in for a trainer: records the config it is built with."""

    built: list = []

    def __init__(self, model, reward_funcs, args, train_dataset, peft_config=None):
        RecordingTrainer.built.append((model, args))
        self.args, self.callbacks = args, []

    def add_callback(self, callback):
        self.callbacks.append(callback)

    def get_turn_instruction(self, example, turn):
        return f"row {example['answer']}"


class TestRun:
    @pytest.fixture
    def recorded(self, monkeypatch, tmp_path):
        """`run` with recording trainers and evaluations: what each stage and evaluation was given."""
        rows = [{"prompt": "p", "answer": "1"}]
        monkeypatch.setitem(TASKS, "math", dataclasses.replace(TASKS["math"], load=lambda *a: (rows, rows)))
        monkeypatch.setattr(RecordingTrainer, "built", [])
        monkeypatch.setattr(pipeline, "train_stage", lambda trainer: trainer.args.output_dir)
        monkeypatch.setattr(pipeline, "_check_loadable", lambda model_path: None)  # models named "BASE", "S1"
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


class TestTaskArguments:
    def test_old_embedded_dataset_name_says_what_to_set(self):
        with pytest.raises(ValueError, match="set `task: embedded`"):
            TaskArguments(dataset_name="embedded")

    def test_unknown_task_lists_the_registered_ones(self):
        with pytest.raises(ValueError, match="'code', 'embedded', 'math'"):
            TaskArguments(task="chess")

    @pytest.mark.parametrize(
        "dataset_name,dataset_config,expected",
        [
            (None, None, ("google-research-datasets/mbpp", "full")),  # the task's set, with the task's config
            ("me/my_set", None, ("me/my_set", None)),  # a set of the user's: no config of another set
            ("me/my_set", "small", ("me/my_set", "small")),
        ],
    )
    def test_defaults_come_from_the_task(self, monkeypatch, dataset_name, dataset_config, expected):
        calls = []

        def load(name, config, train_split, eval_name, eval_split):
            calls.append((name, config, eval_name, eval_split))
            return [], [{"prompt": "p"}] * 5

        monkeypatch.setitem(TASKS, "code", dataclasses.replace(TASKS["code"], load=load))
        args = TaskArguments(task="code", dataset_name=dataset_name, dataset_config=dataset_config, max_eval_samples=3)
        _, held_out = args.load_data()
        assert calls == [(*expected, "openai/openai_humaneval", "test")] and len(held_out) == 3


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
    load = lambda *a: (Dataset.from_list(rows), rows[:2])  # noqa: E731
    monkeypatch.setitem(TASKS, "math", dataclasses.replace(TASKS["math"], load=load))
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
