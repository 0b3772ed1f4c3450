import dataclasses
import json
import sys
from importlib.metadata import entry_points

import pytest
from trl import TrlParser

from score_trl.eval_cli import EvalArguments, ModelLoadError, load_model_and_tokenizer, main, run
from score_trl.prompts import MATH_SYSTEM_PROMPT
from score_trl.run_inputs import resolve_inputs
from score_trl.tasks import TaskArguments


# MATH-500's columns as its JSON lines file has them; the second gold answer is one of its escaped-dollar forms.
MATH500 = [
    {
        "problem": "What is $2+2$?",
        "solution": "$2+2=\\boxed{4}$.",
        "answer": "4",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    },
    {
        "problem": "Three pens cost $\\$6.30$ each. What do they cost together?",
        "solution": "$3 \\cdot 6.30 = \\boxed{\\$18.90}$.",
        "answer": "\\$18.90",
        "subject": "Prealgebra",
        "level": 2,
        "unique_id": "test/prealgebra/2.json",
    },
    {
        "problem": "Simplify $\\frac{2}{4}$.",
        "solution": "$\\boxed{\\frac{1}{2}}$",
        "answer": "\\frac{1}{2}",
        "subject": "Algebra",
        "level": 1,
        "unique_id": "test/algebra/3.json",
    },
]


@pytest.fixture
def math500_file(tmp_path):
    path = tmp_path / "math500.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MATH500))
    return str(path)


def _rows(dataset_name: str, model_path: str) -> list[dict]:
    """The rows `score-trl-eval --task math --dataset_name <file>` evaluates."""
    return resolve_inputs(
        TaskArguments(task="math", eval_dataset_name=dataset_name), model_path, with_train=False
    ).held_out


def test_local_math_file_gets_the_hub_conversion(math500_file, tiny_model_path):
    rows = _rows(math500_file, tiny_model_path)
    assert [row["id"] for row in rows] == [p["unique_id"] for p in MATH500]
    assert [row["answer"] for row in rows] == [p["answer"] for p in MATH500]
    assert rows[1]["prompt"] == [
        {"role": "system", "content": MATH_SYSTEM_PROMPT},
        {"role": "user", "content": MATH500[1]["problem"]},
    ]


def test_local_file_already_in_row_format_is_read_as_is(tmp_path, tiny_model_path):
    path = tmp_path / "rows.jsonl"
    row = {"prompt": [{"role": "user", "content": "1+1?"}], "answer": "2", "id": "a"}
    path.write_text(json.dumps(row) + "\n")
    assert _rows(str(path), tiny_model_path) == [row]


@pytest.mark.parametrize("turn_feedback", [False, True])
def test_cli_evaluates_a_local_math500_file(turn_feedback, tmp_path, math500_file, tiny_model_path):
    out = tmp_path / "eval"
    args = EvalArguments(
        model_name_or_path=tiny_model_path,
        task="math",
        dataset_name=math500_file,
        max_new_tokens=4,
        batch_size=4,
        turn_feedback=turn_feedback,
        output_dir=str(out),
    )
    metrics = main(args)
    assert metrics["n"] == 3
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert sorted(t["id"] for t in traces) == sorted(p["unique_id"] for p in MATH500)
    # with the task's feedback (math_feedback), told after every attempt the verifier scores wrong (the tiny model's
    # 4 tokens: all of them); without it, never
    told = [t["r1"] < 1.0 if turn_feedback else False for t in traces]
    assert [t["told2"] for t in traces] == told and any(told) == turn_feedback
    assert metrics["feedback_rate"] == sum(told) / len(told)


@pytest.mark.parametrize("path", ["/no/such/score_trl/model", "./no_such_model", "runs/stage2/checkpoint-10"])
def test_missing_model_path_is_one_line(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["score-trl-eval", "--model_name_or_path", path, "--output_dir", "eval"])
    with pytest.raises(SystemExit) as exit_info:
        run()
    message = str(exit_info.value.code)
    assert "\n" not in message
    assert message.startswith("score-trl-eval: error:") and f"{path!r} does not exist" in message


def test_hub_id_that_cannot_be_loaded_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no such directory here, so the name is tried as a Hub id (offline in the tests)
    with pytest.raises(ModelLoadError, match="'no-such-org/no-such-model' is not a local directory") as error:
        load_model_and_tokenizer("no-such-org/no-such-model")
    assert "\n" not in str(error.value)


def test_directory_without_a_model_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="holds no loadable model") as error:
        load_model_and_tokenizer(str(tmp_path))
    assert "\n" not in str(error.value)


def test_the_console_script_runs_the_cli():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "score-trl-eval"]
    assert script.load() is run


def test_help_documents_every_option():
    text = TrlParser((EvalArguments,)).format_help()
    for spec in dataclasses.fields(EvalArguments):
        assert f"--{spec.name}" in text and spec.metadata.get("help")


def test_command_line_run_writes_both_files(tmp_path, tiny_model_path, monkeypatch):
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(6)]
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "eval"
    argv = ["score-trl-eval", "--task", "math", "--model_name_or_path", tiny_model_path, "--dataset_name", str(data)]
    monkeypatch.setattr(sys, "argv", [*argv, "--max_new_tokens", "4", "--output_dir", str(out)])
    run()
    assert json.loads((out / "metrics.json").read_text())["n"] == 6
    assert len((out / "traces.jsonl").read_text().splitlines()) == 6
