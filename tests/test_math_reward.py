import threading

import pytest

from score_trl.rewards import extract_final_answer, math_reward, verify_math


PHRASE = "Final Answer: The final answer is ${}$. I hope it is correct."

CASES = [
    # (completion, gold, expected)
    (r"So the result is \boxed{4}.", "4", 1.0),
    (r"\boxed{5}", "4", 0.0),
    (PHRASE.format("4"), "4", 1.0),
    (PHRASE.format("7"), "4", 0.0),
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{0.5}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\dfrac{3}{4}}", "0.75", 1.0),
    (r"\boxed{\frac12}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\sqrt{2}/2", 1.0),
    (r"\boxed{\sqrt{3}}", r"\sqrt{2}", 0.0),
    (r"\boxed{[1, 2)}", "[1,2)", 1.0),
    (r"\boxed{(1, 2)}", "[1,2)", 0.0),
    (r"\boxed{\{2, 1\}}", r"\{1,2\}", 1.0),
    (r"\boxed{3, 5}", "5, 3", 1.0),
    (r"\boxed{x = 5}", "5", 1.0),
    (r"\boxed{-3}", "3", 0.0),
    (r"\boxed{10\%}", "10", 1.0),
    (r"\boxed{90^\circ}", "90", 1.0),
    (r"\boxed{\text{(C)}}", r"\text{(C)}", 1.0),
    (r"\boxed{2\pi}", r"2\pi", 1.0),
    (r"\boxed{\pi}", "3", 0.0),
    (r"First \boxed{3}, but on reflection \boxed{4}.", "4", 1.0),
    (r"First \boxed{4}, but on reflection \boxed{3}.", "4", 0.0),
    (PHRASE.format("3") + r" Actually \boxed{4}", "4", 1.0),
    (r"\boxed{4} " + PHRASE.format("3"), "4", 0.0),
    ("I do not know.", "4", 0.0),
    ("The answer is 4", "4", 0.0),  # no final-answer form: not an answer
    (r"\boxed{}", "4", 0.0),
    (r"\boxed{4}", "@@", None),  # unparseable gold: skip, never 1.0
    (r"\boxed{4}", "", None),
    (r"\boxed{\frac{a}{b}}", "a/b", 1.0),
]


@pytest.mark.parametrize(("completion", "gold", "expected"), CASES)
def test_verify_math(completion, gold, expected):
    assert verify_math(completion, gold) == expected


def test_only_the_tail_is_read():
    early_answer = r"\boxed{4}" + "x" * 10_000
    assert extract_final_answer(early_answer) is None
    assert verify_math(early_answer, "4") == 0.0
    assert verify_math("x" * 10_000 + r"\boxed{4}", "4") == 1.0


def test_nested_braces_are_balanced():
    assert extract_final_answer(r"\boxed{\frac{1}{\sqrt{2}}} done") == r"\frac{1}{\sqrt{2}}"


def test_works_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(verify_math(r"\boxed{\frac{1}{2}}", "0.5")))
    thread.start()
    thread.join()
    assert results == [1.0]


def test_math_reward_plain_and_conversational():
    plain = math_reward(prompts=["q"] * 3, completions=[r"\boxed{2}", r"\boxed{3}", "none"], answer=["2", "2", "2"])
    assert plain == [1.0, 0.0, 0.0]
    chat = [[{"role": "assistant", "content": r"\boxed{2}"}], [{"role": "assistant", "content": r"\boxed{1}"}]]
    assert math_reward(prompts=[[], []], completions=chat, answer=["2", "@@"], trainer_state=None) == [1.0, None]


def test_math_reward_keeps_its_name_for_trl_logs():
    assert math_reward.__name__ == "math_reward"


# MATH writes money with an escaped dollar (3 of MATH-500's gold answers): `\$` is a currency sign, not math mode.
ESCAPED_DOLLAR_GOLD = [
    (r"\$18.90", [r"\boxed{18.90}", r"\boxed{\$18.90}", r"\boxed{18.9}", PHRASE.format(r"\$18.90")], r"\boxed{19.80}"),
    (r"\$32,\!348", [r"\boxed{32348}", r"\boxed{\$32,348}", r"\boxed{32,\!348}"], r"\boxed{32,349}"),
    (r"\$36", [r"\boxed{36}", r"\boxed{\$36}", r"\boxed{\$36.00}", r"\boxed{36\text{ dollars}}"], r"\boxed{63}"),
]


@pytest.mark.parametrize(("gold", "right", "wrong"), ESCAPED_DOLLAR_GOLD)
def test_escaped_dollar_gold_answers_are_judged(gold, right, wrong):
    assert [verify_math(completion, gold) for completion in right] == [1.0] * len(right)
    assert verify_math(wrong, gold) == 0.0


def test_to_math_rows_keeps_escaped_dollar_gold_answers():
    from datasets import Dataset

    from score_trl.data.math import to_math_rows

    problems = [
        {"problem": "Price?", "answer": r"\$18.90", "solution": ""},
        {"problem": "Total?", "answer": "", "solution": r"It is \boxed{\$32,\!348}."},  # gold from the solution
        {"problem": "Cost?", "answer": r"\$36", "solution": ""},
        {"problem": "Broken?", "answer": "@@", "solution": ""},
    ]
    rows = to_math_rows(Dataset.from_list(problems))
    assert rows["answer"] == [r"\$18.90", r"\$32,\!348", r"\$36"]
    assert rows["id"] == ["0", "1", "2"]
