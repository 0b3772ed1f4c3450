"""benchmarks/base_properties.py: each lookup and habit read off constructed traces, counted by hand."""

import pytest


# 3 * x + 1 = 3 mod 10: x = 4. A first answer of 2 checks as 3 * 2 = 6, 6 + 1 = 7 != 3: "no".
PROBLEM = {"id": "3-1-3", "a": 3, "b": 1, "t": 3, "answer": "4"}
TRACES = [
    # wrong, "no", solved in two right steps, and the answer is the solve's: a fix
    {
        "id": "3-1-3", "y1": r"answer: \boxed{2}", "r1": 0.0, "r2": 1.0,
        "y2": r"check: 3 * 2 = 6 , 6 + 1 = 7 , no . solve: 3 - 1 = 2 , 2 / 3 = 4 . answer: \boxed{4}",
    },
    # right, "ok", kept
    {"id": "3-1-3", "y1": r"answer: \boxed{4}", "r1": 1.0, "r2": 1.0, "y2": r"check: 3 * 4 = 2 , 2 + 1 = 3 , ok . answer: \boxed{4}"},
    # wrong, a wrong product (3 * 2 is not 5) but the sum of what it wrote is right, "no", then a wrong guess
    {"id": "3-1-3", "y1": r"answer: \boxed{2}", "r1": 0.0, "r2": 0.0, "y2": r"check: 3 * 2 = 5 , 5 + 1 = 6 , no . answer: \boxed{7}"},
]  # fmt: skip


def test_properties_count_each_step_and_habit():
    from base_properties import properties

    result = properties(TRACES, {PROBLEM["id"]: PROBLEM})
    expected = {
        "product_right": 2 / 3, "sum_right": 1.0, "verdict_right": 1.0, "difference_right": 1.0,
        "quotient_right": 1.0, "boxed_right": 1.0, "p_change_after_ok": 0.0, "p_change_after_no": 1.0,
        "p_solve_after_no": 0.5, "solve_right": 1.0, "change_of_wrong_right": 0.5, "solve_at_turn1": 0.0,
        "parsed": 1.0,
    }  # fmt: skip
    assert result == pytest.approx(expected)


def test_an_unknown_task_is_named():
    from base_properties import PropertiesArguments

    with pytest.raises(ValueError, match="--task 'rivl'"):
        PropertiesArguments(task="rivl")


def test_task_and_model_conflict():
    from base_properties import PropertiesArguments

    with pytest.raises(ValueError, match="pass one"):
        PropertiesArguments(task="rival", model="outputs/some/model")


def test_main_measures_a_model_path(tmp_path, capsys):
    import json

    from base_properties import PropertiesArguments, main

    from score_trl.embedded import build_tokenizer
    from score_trl.tiny_model import build_tiny_model

    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer, "llama").save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    main(PropertiesArguments(model=str(tmp_path), split="held_out", samples=1))
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{") :])
    assert result["n"] == 40 and 0.0 <= result["acc_t1"] <= 1.0 and "p_solve_after_no" in result
