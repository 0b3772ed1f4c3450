import threading
import time

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


# Answers a policy can write to stall training: a power tower and a huge power (stopped before sympy sees them), a
# huge binomial and deep nesting (stopped by the hard limit), and a box storm.
HOSTILE_ANSWERS = [
    r"\boxed{9^{9^{9^{9}}}}",
    r"\boxed{\binom{99999999}{49999999}}",
    r"\boxed{99999999999999^{99999999999}}",
    r"\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
    "\\boxed{" * 2000 + "1",
]


@pytest.mark.parametrize("on_main_thread", [True, False])
def test_hostile_answers_are_bounded_on_and_off_the_main_thread(on_main_thread):
    from score_trl.rewards import MathVerifier

    verifier = MathVerifier(answer_timeout=1.0)
    assert verifier.verify(r"\boxed{\frac{1}{2}}", "0.5") == 1.0  # the worker is up
    results = []

    def run():
        for answer in HOSTILE_ANSWERS:
            start = time.monotonic()
            results.append((verifier.verify(answer, "4"), time.monotonic() - start))

    if on_main_thread:
        run()
    else:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=60)
    assert [score for score, _ in results] == [0.0] * len(HOSTILE_ANSWERS)
    # bounded by the 1 s limit, plus a fresh worker's start (importing math-verify) after a kill, on a loaded machine
    assert max(seconds for _, seconds in results) < 10.0
    assert verifier.timeouts >= 1  # the binomial ran into the hard limit
    assert verifier.verify(r"\boxed{\frac{1}{2}}", "0.5") == 1.0  # and a fresh worker took over
    verifier.close()


def test_a_batch_that_runs_out_of_time_leaves_the_rest_unjudged_and_logs_the_counts():
    from score_trl.rewards import make_math_reward

    logged = {}
    reward = make_math_reward(answer_timeout=1.0, batch_timeout=1.5)
    slow = HOSTILE_ANSWERS[1]
    completions = [r"\boxed{2}", slow, slow, r"\boxed{2}"]
    start = time.monotonic()
    scores = reward(
        prompts=[""] * 4, completions=completions, answer=["2"] * 4, log_metric=lambda k, v: logged.update({k: v})
    )
    # a restart of the worker is not charged to the answers, but the batch as a whole stays bounded
    assert time.monotonic() - start < 10
    # judged; out of its own second; the second slow one gets what is left (out of time), or nothing when the worker's
    # restart used it up (untried); the last is never tried, whatever the machine's load
    assert scores[:2] == [1.0, 0.0] and scores[2] in (0.0, None) and scores[3] is None
    assert logged == {
        "math_reward/out_of_time": float(scores.count(0.0)),
        "math_reward/not_judged": float(scores.count(None)),
    }
    with pytest.raises(ValueError, match="positive"):
        make_math_reward(answer_timeout=0)


@pytest.mark.parametrize(
    ("answer", "absurd"),
    [
        (r"10^{{10}^{10}}", True),
        (r"(10^{10})!", True),
        (r"{99999999}!", True),
        (r"99999999999999^{99999999999}", True),
        (r"9^{9^{9^{9}}}", True),
        ("x^2+y^2", False),
        ("2^{10}", False),
        ("10^{100}", False),
        ("5!", False),
        (r"\frac{10!}{2}", False),
        (r"e^{i\pi}", False),
    ],
)
def test_answers_sympy_would_compute_for_minutes_never_reach_it(answer, absurd):
    from score_trl.rewards.math import _absurd

    assert _absurd(answer) is absurd


def test_a_trainer_holding_descriptors_past_1024_can_still_score(descriptors_past_1024):
    from score_trl.rewards import MathVerifier

    verifier = MathVerifier()
    assert verifier.verify(r"\boxed{\frac{1}{2}}", "0.5") == 1.0
    verifier.close()


def test_a_worker_that_cannot_start_is_our_failure_not_a_score(tmp_path, monkeypatch):
    import sys

    from score_trl.rewards import MathVerifier

    broken = tmp_path / "python3"
    broken.write_text("#!/bin/sh\necho 'no math-verify here' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    with pytest.raises(RuntimeError, match="no math-verify here"):
        MathVerifier().verify(r"\boxed{2}", "2")
