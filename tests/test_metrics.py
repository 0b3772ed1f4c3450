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
    assert answer_changed_rate(t1, t2) == pytest.approx(2 / 4)


def test_answer_changed_without_final_answers_compares_texts():
    assert answer_changed("def f():\n    return 1\n", "def f():\n    return 1") is False
    assert answer_changed("def f():\n    return 1\n", "def f():\n    return 2\n") is True


def test_table_row():
    row = self_correction_metrics([1, 0], [1, 1], [r"\boxed{1}", r"\boxed{2}"], [r"\boxed{1}", r"\boxed{3}"])
    assert row["acc_t1"] == 0.5 and row["acc_t2"] == 1.0
    assert row["delta"] == 0.5 and row["delta_i2c"] == 0.5 and row["delta_c2i"] == 0.0
    assert row["changed_rate"] == 0.5 and row["n"] == 2
    assert row["changed_when_wrong"] == 1.0 and row["changed_when_right"] == 0.0
    assert row["edit_ratio"] == pytest.approx((0 + 1 / 18) / 2)


def test_mismatched_lengths_error():
    with pytest.raises(ValueError, match="must match"):
        transition_rates([1], [1, 0])


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
