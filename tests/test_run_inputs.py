"""One resolver of (task, model, data) for the three entry points: the pipeline, the SFT baselines and `score-trl-eval`
show a model the same prompt, turn for turn, on the same rows (HumanEval's included)."""

import dataclasses
import json

import pytest
from transformers import AutoTokenizer
from trl import ModelConfig, SFTConfig

from score_trl import MultiTurnRLOOConfig, eval_cli, pipeline
from score_trl.baselines import script as baselines
from score_trl.evaluation import EvalSettings
from score_trl.prompts import CODE_CORRECTION_INSTRUCTION
from score_trl.rollout import TurnRenderer, end_of_turn_ids
from score_trl.run_inputs import resolve_inputs
from score_trl.tasks import TASKS, TaskArguments


HUMANEVAL = [
    {
        "task_id": f"HumanEval/{i}",
        "prompt": f'def add_{i}(a, b):\n    """Add two numbers, plus {i}."""\n',
        "canonical_solution": f"    return a + b + {i}\n",
        "test": f"def check(candidate):\n    assert candidate(1, 2) == {3 + i}\n",
        "entry_point": f"add_{i}",
    }
    for i in range(3)
]
MBPP = [
    {"task_id": i, "text": f"Write add_{i}.", "code": "", "test_list": [f"assert add_{i}(1, 2) == 3"]}
    for i in range(4)
]
MATH500 = [
    {"problem": f"What is {i} + 1?", "solution": f"\\boxed{{{i + 1}}}", "answer": str(i + 1), "unique_id": f"t/{i}"}
    for i in range(3)
]


class Stop(Exception):
    """Raised where an entry point starts its first evaluation: what it was about to evaluate has been recorded."""


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def data(tmp_path, tiny_model_path, monkeypatch):
    """Local copies of each task's sets (the Hub is offline in the tests): (training set, evaluation set) by task."""
    monkeypatch.setitem(
        TASKS, "embedded", dataclasses.replace(TASKS["embedded"], base_model=lambda quick: tiny_model_path)
    )
    return {
        # a directory of JSON lines, as a downloaded copy of the Hub set is
        "code": (
            str(_write(tmp_path / "mbpp" / "train.jsonl", MBPP).parent),
            str(_write(tmp_path / "he" / "test.jsonl", HUMANEVAL).parent),
        ),
        # a JSON-lines file, as MATH-500's is
        "math": (str(_write(tmp_path / "math.jsonl", MATH500)),) * 2,
        "embedded": (None, None),
    }


def _first_evaluation(monkeypatch, module) -> list:
    seen = []

    def evaluate_checkpoint(model_path, rows, verifier, settings, **kwargs):
        seen.append((model_path, rows, verifier, settings))
        raise Stop

    monkeypatch.setattr(module, "evaluate_checkpoint", evaluate_checkpoint)
    return seen


def _rendered(model_path: str, rows: list[dict], settings: EvalSettings) -> tuple[list[int], list[int]]:
    """(turn-1 ids, the ids between the attempts) of the first row, as evaluation renders them."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    renderer = TurnRenderer(tokenizer, end_of_turn_ids(tokenizer, None), settings.instruction_template)
    prompt = rows[0]["prompt"]
    suffix = renderer.suffix(settings.instruction_for(rows[0], 2), isinstance(prompt, list))
    return renderer.first_turn_ids([prompt])[0], [*suffix.close, *suffix.instruction]


@pytest.mark.parametrize("task", ["code", "math", "embedded"])
def test_the_three_entry_points_show_the_same_prompt(task, data, tiny_model_path, tmp_path, monkeypatch):
    train, held_out = data[task]
    model = "embedded" if task == "embedded" else tiny_model_path
    seen = {}

    seen["pipeline"] = _first_evaluation(monkeypatch, pipeline)
    script = pipeline.ScoreScriptArguments(task=task, dataset_name=train, eval_dataset_name=held_out)
    config = MultiTurnRLOOConfig(str(tmp_path / "p"), num_generations=2, use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(Stop):
        pipeline.run(script, config, ModelConfig(model_name_or_path=model))

    seen["baselines"] = _first_evaluation(monkeypatch, baselines)
    arguments = baselines.BaselineArguments(task=task, dataset_name=train, eval_dataset_name=held_out)
    with pytest.raises(Stop):
        baselines.run_baseline(
            "STaR",
            arguments,
            SFTConfig(str(tmp_path / "b"), use_cpu=True, bf16=False),
            ModelConfig(model_name_or_path=model),
        )

    seen["score-trl-eval"] = _first_evaluation(monkeypatch, eval_cli)
    with pytest.raises(Stop):
        eval_cli.main(
            eval_cli.EvalArguments(
                task=task, model_name_or_path=model, dataset_name=held_out, output_dir=str(tmp_path / "e")
            )
        )

    (path, rows, verifier, settings), *others = [calls[0] for calls in seen.values()]
    assert path == tiny_model_path and rows and verifier == TASKS[task].verifier
    rendered = _rendered(path, rows, settings)
    for name, (other_path, other_rows, other_verifier, other_settings) in zip(list(seen)[1:], others, strict=True):
        assert (other_path, other_rows, other_verifier) == (path, rows, verifier), name
        assert _rendered(other_path, other_rows, other_settings) == rendered, name
    if task == "code":  # HumanEval as the pipeline trains on it: a chat turn, the trusted helpers, its own ids
        tokenizer = AutoTokenizer.from_pretrained(path)
        assert tokenizer.decode(rendered[0]).startswith("<|im_start|>user\nComplete the following Python function.")
        assert [row["id"] for row in rows] == [row["task_id"] for row in HUMANEVAL]
        assert rows[0]["test_setup_code"] == HUMANEVAL[0]["prompt"]
        assert CODE_CORRECTION_INSTRUCTION in tokenizer.decode(rendered[1])


@pytest.mark.parametrize(
    "dataset_name,dataset_config,expected",
    [
        (None, None, ("google-research-datasets/mbpp", "full")),  # the task's set, with the task's config
        ("me/my_set", None, ("me/my_set", None)),  # a set of the user's: no config of another set
        ("me/my_set", "small", ("me/my_set", "small")),
    ],
)
def test_data_sets_default_to_the_tasks(monkeypatch, tiny_model_path, dataset_name, dataset_config, expected):
    calls = []

    def load_train(name, config, split):
        calls.append(("train", name, config, split))
        return []

    def load_eval(name, config, split):
        calls.append(("eval", name, config, split))
        return [{"prompt": "p"}] * 5

    monkeypatch.setitem(TASKS, "code", dataclasses.replace(TASKS["code"], load_train=load_train, load_eval=load_eval))
    args = TaskArguments(task="code", dataset_name=dataset_name, dataset_config=dataset_config, max_eval_samples=3)
    inputs = resolve_inputs(args, tiny_model_path)
    assert calls == [("train", *expected, "train"), ("eval", "openai/openai_humaneval", None, "test")]
    assert inputs.held_out == [{"prompt": "p", "id": str(i)} for i in range(3)]  # named, then cut
    assert resolve_inputs(args, tiny_model_path, with_train=False).train is None and len(calls) == 3


def test_the_model_named_embedded_is_the_tasks_own_base(monkeypatch, tiny_model_path):
    asked = []
    base = lambda quick: asked.append(quick) or tiny_model_path  # noqa: E731
    monkeypatch.setitem(TASKS, "embedded", dataclasses.replace(TASKS["embedded"], base_model=base))
    for name, quick in (("embedded", False), (None, True)):
        inputs = resolve_inputs(TaskArguments(task="embedded"), name, with_train=False, quick_base=quick)
        assert inputs.model_path == tiny_model_path
    assert asked == [False, True]
    with pytest.raises(ValueError, match="'embedded' is the embedded task's base model, and task 'arithmetic'"):
        resolve_inputs(TaskArguments(task="arithmetic"), "embedded", with_train=False)


def test_a_generated_task_refuses_a_data_set_name(tiny_model_path):
    with pytest.raises(ValueError, match="generates its problems reads no data set, but 'me/mine' was named"):
        resolve_inputs(TaskArguments(task="embedded", eval_dataset_name="me/mine"), tiny_model_path)
