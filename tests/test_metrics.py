import pytest

from score_trl.metrics import (
    accuracy,
    answer_changed,
    answer_changed_rate,
    clustered_standard_error,
    edit_distance_ratio,
    format_table,
    self_correction_metrics,
    transition_rates,
)
from score_trl.rewards import ANSWER_FORMATS


MATH = ANSWER_FORMATS["math"]


def test_transitions_by_hand():
    # 5 problems: i->c, c->c, c->i, i->i, i->c
    t1 = [0, 1, 1, 0, 0]
    t2 = [1, 1, 0, 0, 1]
    rates = transition_rates(t1, t2)
    assert rates["delta_i2c"] == pytest.approx(2 / 5)
    assert rates["delta_c2i"] == pytest.approx(1 / 5)
    assert rates["delta"] == pytest.approx(accuracy(t2) - accuracy(t1)) == pytest.approx(1 / 5)


def test_unjudged_samples_are_dropped():
    assert accuracy([1, None, 0, 1]) == pytest.approx(2 / 3)
    assert transition_rates([1, None, 0], [0, 1, 1]) == {"delta": 0.0, "delta_i2c": 0.5, "delta_c2i": 0.5}


def test_edit_distance_ratio_by_hand():
    assert edit_distance_ratio("abc", "abc") == 0.0
    assert edit_distance_ratio("abc", "abd") == pytest.approx(1 / 6)  # one substitution over 6 characters
    assert edit_distance_ratio("", "xyz") == pytest.approx(3 / 3)
    assert edit_distance_ratio("", "") == 0.0


def test_answer_changed_rate_reads_final_answers():
    t1 = [r"work \boxed{3}", r"\boxed{4}", "no answer", r"The final answer is $5$. I hope"]
    t2 = [r"other work \boxed{3}", r"\boxed{5}", r"\boxed{1}", r"\boxed{5}"]
    assert answer_changed_rate(t1, t2, **MATH) == pytest.approx(2 / 4)


def test_answer_changed_without_final_answers_compares_texts():
    code = ANSWER_FORMATS["code"]
    assert answer_changed("def f():\n    return 1\n", "def f():\n    return 1", **code) is False
    assert answer_changed("def f():\n    return 1\n", "def f():\n    return 2\n", **code) is True
    # math texts with no final answer in either attempt: the texts too
    assert answer_changed("no answer", "no answer ", **MATH) is False


def test_answer_changed_has_no_default_answer_format():
    with pytest.raises(TypeError, match="extract_answer"):
        answer_changed(r"so \boxed{2}", r"thus \boxed{2}")


def test_table_row():
    row = self_correction_metrics([1, 0], [1, 1], [r"\boxed{1}", r"\boxed{2}"], [r"\boxed{1}", r"\boxed{3}"], **MATH)
    assert row["acc_t1"] == 0.5 and row["acc_t2"] == 1.0
    assert row["delta"] == 0.5 and row["delta_i2c"] == 0.5 and row["delta_c2i"] == 0.0
    assert row["changed_rate"] == 0.5 and row["n"] == 2
    assert row["changed_when_wrong"] == 1.0 and row["changed_when_right"] == 0.0
    assert row["edit_ratio"] == pytest.approx((0 + 1 / 18) / 2)


def test_mismatched_lengths_error():
    with pytest.raises(ValueError, match="must match"):
        transition_rates([1], [1, 0])


PHRASE_HALF = r"Final Answer: The final answer is $\frac{1}{2}$. I hope it is correct."


def test_equivalent_answers_are_no_change():
    assert answer_changed(r"so \boxed{\frac{1}{2}}", r"so \boxed{0.5}", **MATH) is False
    assert answer_changed(r"\boxed{1/2}", PHRASE_HALF, **MATH) is False
    assert answer_changed(r"\boxed{x = 3}", r"\boxed{3}", **MATH) is False
    assert answer_changed(r"\boxed{\frac{1}{2}}", r"\boxed{\frac{1}{3}}", **MATH) is True
    assert answer_changed(r"\boxed{\frac{1}{2}}", "no answer any more", **MATH) is True
    first, second = [r"\boxed{0.5}", r"\boxed{2}"], [r"\boxed{\frac12}", r"\boxed{3}"]
    assert answer_changed_rate(first, second, **MATH) == pytest.approx(1 / 2)


def test_answer_changed_takes_the_task_extractor_and_comparison():
    def last_line(text: str) -> str | None:
        return text.strip().splitlines()[-1] if text.strip() else None

    def same_number(a: str, b: str) -> bool:
        return float(a) == float(b)

    assert answer_changed("work\n2", "other work\n2.0", extract_answer=last_line, same_answer=same_number) is False
    assert answer_changed("work\n2", "work\n3", extract_answer=last_line, same_answer=same_number) is True
    # Exact strings only: the old behaviour, for tasks whose answers have no equivalence.
    assert answer_changed(
        r"\boxed{0.5}", r"\boxed{1/2}", extract_answer=MATH["extract_answer"], same_answer=str.__eq__
    )
    # No extractor (code, free text): whole texts are compared.
    assert answer_changed(r"so \boxed{2}", r"thus \boxed{2}", extract_answer=None) is True


def test_equivalent_answers_short_circuits_equal_strings(monkeypatch):
    from score_trl.rewards import math as math_module

    def no_parsing(*args, **kwargs):
        raise AssertionError("equal strings must not be parsed")

    monkeypatch.setattr(math_module._DEFAULT, "ask", no_parsing)
    assert math_module.equivalent_answers(r"\frac{1}{2}", r"\frac{1}{2} ") is True


@pytest.mark.parametrize(
    ("votes", "gold", "expected"),
    [
        # one answer written three ways outvotes a wrong answer given twice
        ([r"\frac{1}{2}", "0.5", "1/2", "3", "3"], "1/2", True),
        ([r"\frac{1}{2}", "0.5", "1/2", "3", "3"], "3", False),
        (["3", "3", r"\frac{1}{2}", "0.5"], "1/2", False),  # a tie goes to the answer seen first
        (["3", None, r"\frac{1}{2}", "0.5", None], "0.5", True),  # no answer is no vote
        ([None, None], "1", False),
    ],
)
def test_majority_vote_groups_equivalent_answers(votes, gold, expected):
    from score_trl.evaluation import _majority_correct

    assert _majority_correct(votes, gold) is expected


def test_clustered_standard_error_counts_a_problem_once():
    # Two problems, two samples each: cluster means 1 and 0, so std(means) / sqrt(2) = sqrt(0.5) / sqrt(2) = 0.5,
    # where treating the four samples as independent would give std / sqrt(4) = 0.289.
    assert clustered_standard_error([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(0.5)
    # One sample per problem: the plain standard error of the mean, stdev([1, 0, 0, -1]) / 2.
    assert clustered_standard_error([1, 0, 0, -1], [0, 1, 2, 3]) == pytest.approx((2 / 3) ** 0.5 / 2)
    assert clustered_standard_error([1, 0], ["a", "a"]) != clustered_standard_error([1, 0], ["a", "a"])  # NaN
    with pytest.raises(ValueError, match="must match"):
        clustered_standard_error([1, 0], ["a"])


def test_table_leaves_a_missing_column_blank():
    table = format_table({"base": {"acc_t1": 0.25, "delta": 0.5, "delta_se": 0.125, "n": 8}, "old": {"delta": 0.1}})
    assert "| base | 0.250 | " in table and "| 0.500 | 0.125 |" in table
    assert "| old |  |  | 0.100 |  |" in table and "nan" not in table
