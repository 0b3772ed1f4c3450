"""The paper's self-correction metrics, as pure functions of per-problem correctness and texts.

Correctness values are 0/1 (bool or float); None (a sample the verifier could not judge) is dropped from every
metric that reads it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from rapidfuzz.distance import Levenshtein


__all__ = [
    "TABLE_COLUMNS",
    "accuracy",
    "answer_changed",
    "answer_changed_rate",
    "clustered_standard_error",
    "edit_distance_ratio",
    "format_table",
    "self_correction_metrics",
    "transition_rates",
]


def _pairs(correct_t1: Sequence, correct_t2: Sequence) -> list[tuple[bool, bool]]:
    if len(correct_t1) != len(correct_t2):
        raise ValueError(f"Turn 1 has {len(correct_t1)} results and turn 2 has {len(correct_t2)}: they must match.")
    return [(bool(a), bool(b)) for a, b in zip(correct_t1, correct_t2, strict=True) if a is not None and b is not None]


def accuracy(correct: Sequence) -> float:
    """Fraction of judged samples that are correct (Accuracy@t for one turn)."""
    judged = [bool(c) for c in correct if c is not None]
    return sum(judged) / len(judged) if judged else 0.0


def transition_rates(correct_t1: Sequence, correct_t2: Sequence) -> dict[str, float]:
    """delta(t1, t2), delta i->c (wrong then right) and delta c->i (right then wrong), over problems judged twice."""
    pairs = _pairs(correct_t1, correct_t2)
    n = len(pairs) or 1
    i2c = sum(1 for a, b in pairs if not a and b) / n
    c2i = sum(1 for a, b in pairs if a and not b) / n
    return {"delta": i2c - c2i, "delta_i2c": i2c, "delta_c2i": c2i}


def clustered_standard_error(values: Sequence[float], clusters: Sequence) -> float:
    """The standard error of the mean of `values`, with samples of the same cluster (e.g. traces of one problem)
    counted as one draw: the cluster-robust estimate sqrt(G / (G - 1) * sum_g (sum_{i in g} (v_i - mean))^2) / N
    over G clusters and N values, which is std(cluster means) / sqrt(G) when the clusters are equal in size.

    Sampling several traces per problem does not give independent draws (a problem's traces agree more than two
    problems' do), so the plain binomial error would be too small. NaN with fewer than two clusters.
    """
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values and {len(clusters)} cluster labels: they must match.")
    sums: dict = {}
    mean = sum(values) / len(values) if values else 0.0
    for value, cluster in zip(values, clusters, strict=True):
        sums[cluster] = sums.get(cluster, 0.0) + value - mean
    groups = len(sums)
    if groups < 2:
        return float("nan")
    return (groups / (groups - 1) * sum(s * s for s in sums.values())) ** 0.5 / len(values)


def edit_distance_ratio(first: str, second: str) -> float:
    """Levenshtein distance between two attempts over their combined length: 0 for a copy, up to 1."""
    total = len(first) + len(second)
    return Levenshtein.distance(first, second) / total if total else 0.0


def answer_changed(
    first: str,
    second: str,
    *,
    extract_answer: Callable[[str], str | None] | None,
    same_answer: Callable[[str, str], bool] = operator.eq,
) -> bool:
    r"""Whether the final answer differs between two attempts.

    `extract_answer` finds a final answer in an attempt (None: there is none) and `same_answer` compares two; math
    passes `score_trl.rewards.extract_final_answer` and `equivalent_answers`, so `0.5` -> `\frac{1}{2}` is no change.
    A missing answer counts as an answer of its own; when neither attempt states one, or with `extract_answer=None`
    (code, free text), the stripped texts are compared. There is no default: which one applies depends on the task.
    """
    if extract_answer is None:
        return first.strip() != second.strip()
    a, b = extract_answer(first), extract_answer(second)
    if a is None and b is None:
        return first.strip() != second.strip()
    if a is None or b is None:
        return True
    return not same_answer(a, b)


def answer_changed_rate(texts_t1: Sequence[str], texts_t2: Sequence[str], **answers: Callable | None) -> float:
    """Fraction of problems whose final answer changed between the two attempts (`answers`: `answer_changed`'s
    `extract_answer` and `same_answer`)."""
    if len(texts_t1) != len(texts_t2):
        raise ValueError(f"Turn 1 has {len(texts_t1)} texts and turn 2 has {len(texts_t2)}: they must match.")
    if not texts_t1:
        return 0.0
    return sum(answer_changed(a, b, **answers) for a, b in zip(texts_t1, texts_t2, strict=True)) / len(texts_t1)


def self_correction_metrics(
    correct_t1: Sequence,
    correct_t2: Sequence,
    texts_t1: Sequence[str],
    texts_t2: Sequence[str],
    **answers: Callable | None,
) -> dict[str, float]:
    """The paper's table row: Acc@t1, Acc@t2, delta, i->c, c->i, plus answer-changed rate and mean edit ratio
    (`answers`: `answer_changed`'s `extract_answer` and `same_answer`).

    `changed_when_wrong` / `changed_when_right` split the answer-changed rate by the first attempt's correctness:
    the paper's collapse is the first falling towards zero, and a model that acts on its own check changes wrong
    answers far more often than right ones.
    """
    ratios = [edit_distance_ratio(a, b) for a, b in zip(texts_t1, texts_t2, strict=True)]
    changed = [answer_changed(a, b, **answers) for a, b in zip(texts_t1, texts_t2, strict=True)]
    when_wrong = [c for c, ok in zip(changed, correct_t1, strict=True) if ok is not None and not ok]
    when_right = [c for c, ok in zip(changed, correct_t1, strict=True) if ok is not None and ok]
    return {
        "acc_t1": accuracy(correct_t1),
        "acc_t2": accuracy(correct_t2),
        **transition_rates(correct_t1, correct_t2),
        "changed_rate": sum(changed) / len(changed) if changed else 0.0,
        "changed_when_wrong": accuracy(when_wrong),
        "changed_when_right": accuracy(when_right),
        "edit_ratio": sum(ratios) / len(ratios) if ratios else 0.0,
        "n": len(_pairs(correct_t1, correct_t2)),
    }


TABLE_COLUMNS = ["acc_t1", "acc_t2", "delta", "delta_se", "delta_i2c", "delta_c2i", "changed_rate", "edit_ratio"]


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table in the paper's columns, one row per named result (a column a result lacks is left blank:
    `delta_se` comes from traces that name their problems). Results of more than two turns add their Acc@t3..tK
    after Acc@t2; delta and its transitions stay first turn against last."""
    later = sorted(
        {k for m in rows.values() for k in m if k.startswith("acc_t") and k[5:].isdigit() and int(k[5:]) > 2}
    )
    columns = [*TABLE_COLUMNS[:2], *sorted(later, key=lambda k: int(k[5:])), *TABLE_COLUMNS[2:]]
    lines = ["| model | " + " | ".join(columns) + " | n |", "|---" * (len(columns) + 2) + "|"]
    for name, metrics in rows.items():
        cells = " | ".join(f"{metrics[c]:.3f}" if c in metrics else "" for c in columns)
        lines.append(f"| {name} | {cells} | {metrics.get('n', '')} |")
    return "\n".join(lines)
