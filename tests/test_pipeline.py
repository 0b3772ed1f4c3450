"""The pipeline's settings: which stage trains with which config and KL reference, and where task defaults apply."""

import dataclasses

import pytest

from score_trl import MultiTurnRLOOConfig, StageOneConfig
from score_trl.pipeline import ScoreScriptArguments, _stage1_config, _stage2_config
from score_trl.tasks import TASKS, TaskArguments


def training_args(tmp_path, **changes):
    values = dict(output_dir=str(tmp_path), num_generations=2, use_cpu=True, bf16=False, report_to="none")
    return MultiTurnRLOOConfig(**{**values, **changes})


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

    def test_stage_one_settings_with_a_single_stage_are_refused(self):
        with pytest.raises(ValueError, match="apply when stage='both'"):
            ScoreScriptArguments(task="embedded", stage="1", stage1_turn_betas=[0.2, 0.01])


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
