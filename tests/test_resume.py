"""Long runs survive a stop: a resumed stage trains as if it had never stopped, a finished stage is not trained again,
the committed metrics file holds every evaluation and curve, and a run of other settings is refused."""

import json
import shutil

import pytest
from datasets import Dataset
from transformers import TrainerCallback
from trl import ModelConfig

from score_trl import MultiTurnRLOOTrainer, pipeline
from score_trl.pipeline import ScoreScriptArguments, train_stage
from score_trl.rewards import completion_text
from score_trl.run_record import check_same_run
from score_trl.tasks import TASKS
from tests.conftest import task_with_rows
from tests.test_trainers import make_args


ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(6)]


def length_reward(prompts, completions, **kwargs):
    """A reward the tiny model's samples differ on, so that the losses are not 0."""
    return [float(len(completion_text(c)) % 3) for c in completions]


def _losses(trainer) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


def test_a_resumed_stage_has_the_losses_of_one_that_never_stopped(tmp_path, tiny_model_path):
    def trainer(out):
        args = make_args(tmp_path, output_dir=str(out), max_steps=4, save_strategy="steps", save_steps=2)
        return MultiTurnRLOOTrainer(tiny_model_path, length_reward, args=args, train_dataset=Dataset.from_list(ROWS))

    whole = trainer(tmp_path / "whole")
    train_stage(whole)
    (tmp_path / "stopped").mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-2", tmp_path / "stopped" / "checkpoint-2")
    resumed = trainer(tmp_path / "stopped")
    steps_run = []
    resumed.add_callback(
        type(
            "Steps",
            (TrainerCallback,),
            {"on_step_end": lambda self, a, state, c, **k: steps_run.append(state.global_step)},
        )()
    )
    train_stage(resumed)  # picks up checkpoint-2: the model, the optimizer, the scheduler and the sampling RNG
    assert steps_run == [3, 4]  # only the steps after the checkpoint
    expected, got = _losses(whole), _losses(resumed)
    assert set(expected) == {1, 2, 3, 4} and {3, 4} <= set(got)
    assert [got[step] for step in (3, 4)] == pytest.approx([expected[step] for step in (3, 4)], abs=1e-6)
    assert any(abs(expected[step]) > 0 for step in (3, 4))  # a loss of 0 would match whatever was resumed


@pytest.fixture
def tiny_task(monkeypatch):
    monkeypatch.setitem(TASKS, "math", task_with_rows("math", ROWS, ROWS[:2]))


def _run(tmp_path, model_path, **changes):
    args = make_args(
        tmp_path, output_dir=str(tmp_path / "run"), max_steps=2, save_strategy="steps", save_steps=2, **changes
    )
    script = ScoreScriptArguments(task="math", eval_max_new_tokens=4, eval_batch_size=2, stage1_max_steps=2)
    return pipeline.run(script, args, ModelConfig(model_name_or_path=model_path))


def test_a_stopped_pipeline_resumes_in_its_stage_and_keeps_its_record(
    tmp_path, tiny_model_path, tiny_task, monkeypatch
):
    trained = []
    real_train_stage = pipeline.train_stage

    def recording_train_stage(trainer):
        trained.append(trainer.args.output_dir)
        return real_train_stage(trainer)

    monkeypatch.setattr(pipeline, "train_stage", recording_train_stage)
    first = _run(tmp_path, tiny_model_path)
    run_dir = tmp_path / "run"
    record = json.loads((run_dir / "run_metrics.json").read_text())
    assert list(record["evaluations"]) == ["base", "stage I", "SCoRe"]
    assert record["evaluations"]["SCoRe"]["n"] == 2 and record["settings"]["learning_rate"] == 0.05
    assert [entry["step"] for entry in record["curves"]["stage2"] if "loss" in entry] == [1, 2]
    assert {"stage1", "stage2", "eval base"} <= set(record["wall_s"])

    # Stopped during Stage II, after its last checkpoint: Stage I is not trained again, Stage II resumes.
    (run_dir / "stage2" / "train_results.json").unlink()
    del record["evaluations"]["SCoRe"]
    (run_dir / "run_metrics.json").write_text(json.dumps(record))
    trained.clear()
    second = _run(tmp_path, tiny_model_path)
    assert trained == [str(run_dir / "stage2")]
    assert second["base"] == first["base"] and second["stage I"] == first["stage I"]
    assert set(second["SCoRe"]) == set(first["SCoRe"])

    # Finished: nothing is trained or evaluated again.
    trained.clear()
    assert _run(tmp_path, tiny_model_path) == second and trained == []


def test_resuming_with_other_settings_names_the_differences(tmp_path, tiny_model_path, tiny_task):
    _run(tmp_path, tiny_model_path)
    with pytest.raises(ValueError, match=r"learning_rate: 0\.05 there, 0\.01 now.*Use another output_dir"):
        _run(tmp_path, tiny_model_path, learning_rate=0.01)


def test_a_directory_without_checkpoints_takes_the_new_settings(tmp_path):
    assert check_same_run(str(tmp_path), {"learning_rate": 0.05}) is False
    assert check_same_run(str(tmp_path), {"learning_rate": 0.01}) is False  # nothing to resume: recorded anew
    (tmp_path / "checkpoint-1").mkdir()
    assert check_same_run(str(tmp_path), {"learning_rate": 0.01}) is True
    with pytest.raises(ValueError, match="learning_rate"):
        check_same_run(str(tmp_path), {"learning_rate": 0.05})
