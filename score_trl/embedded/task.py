r"""The embedded task: a self-contained self-correction testbed that runs offline in minutes on a CPU.

Problems are "solve a * x + b = t mod 10" (a in {1, 3, 7, 9}, so x is unique; b in 0..4: 200 problems, 40 held out
from RL). Turn 1 answers in one step, `answer: \boxed{x}`, which a tiny model gets right about a quarter of the time.
Turn 2 first writes a check of the first answer, `check: a * x1 = m , m + b = v , ok .` ("no" when v != t), then
answers again; after a "no" it may solve the problem in worked steps first:

    check: 3 * 4 = 2 , 2 + 1 = 3 , no . solve: 7 - 1 = 6 , 6 / 3 = 2 . answer: \boxed{2}

Every step of the check and of the solve is a lookup in a table of at most 50 entries (a product or a quotient mod
10 over a in {1, 3, 7, 9}; a sum or a difference mod 10 over b in 0..4), which the base model learns to compute
right about 99% of the time, while the answer in one step stays a 200-entry lookup it mostly misses. So correcting
is possible: a policy that solves after every "no" fixes nearly every wrong first answer. The base model rarely does
(see `score_trl.embedded.base_model`, which pretrains it on this module's traces), and the answers use `\boxed{}`,
so the same `math_reward` scores the toy and MATH.

This module is the task alone (problems, tokenizer, the texts of each attempt, the solver traces the base model
imitates); the factory that pretrains and caches the base model lives beside it in `score_trl.embedded.base_model`.
"""

from __future__ import annotations

import random
from typing import Protocol

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast


__all__ = [
    "EMBEDDED_INSTRUCTION",
    "INVERSE",
    "PRACTICE_FROM",
    "build_tokenizer",
    "first_attempt",
    "make_problems",
    "practice_trace",
    "second_attempt",
    "solver_trace",
    "split_problems",
    "worked_solution",
]

# b in 0..4: the check's sum m + b (mod 10) and the solve's difference t - b are then 50-entry tables, which a tiny
# model learns in the pretraining budget; with b in 0..9 (100 entries, modular addition) its own checks were right
# only 30% of the time.
NUM_OFFSETS = 5
INVERSE = {1: 1, 3: 7, 7: 3, 9: 9}  # a * INVERSE[a] = 1 mod 10
EMBEDDED_INSTRUCTION = "There might be an error in the solution above . Please correct the error , if any ."
# Pretraining learns a practice trace (`practice_trace`) only from this word on.
PRACTICE_FROM = "solve:"
_SPECIALS = ["<|pad|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
_WORDS = [
    "user", "assistant", "system", "solve", "x", "*", "+", "=", "mod", "10", "answer:", "check:", ",", "ok", "no",
    ".", *map(str, range(10)), *(f"\\boxed{{{d}}}" for d in range(10)), *EMBEDDED_INSTRUCTION.split(),
    PRACTICE_FROM, "-", "/",
]  # fmt: skip
_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + ' ' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}{{- message['content'] + '<|im_end|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant ' }}{%- endif %}"
)


class SolverHabits(Protocol):
    """The probabilities of the imperfect solver whose traces the base model imitates (an `EmbeddedRecipe`)."""

    p_correct: float
    p_keep: float
    p_solve: float
    p_practice: float


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the task's ~60 words, with a chat template (assistant turns marked for SFT)."""
    vocab = {token: i for i, token in enumerate(dict.fromkeys(_SPECIALS + _WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>"],
        chat_template=_TEMPLATE,
        padding_side="left",
    )


def make_problems() -> list[dict]:
    """All 200 problems, each with `prompt` (conversational), `answer` (gold x) and an `id`."""
    problems = []
    for a in (1, 3, 7, 9):
        for b in range(NUM_OFFSETS):
            for x in range(10):
                t = (a * x + b) % 10
                problems.append(
                    {
                        "id": f"{a}-{b}-{t}",
                        "prompt": [{"role": "user", "content": f"solve {a} * x + {b} = {t} mod 10"}],
                        "answer": str(x),
                        "a": a,
                        "b": b,
                        "t": t,
                    }
                )
    return problems


def split_problems(held_out: int = 40, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(RL training problems, held-out evaluation problems), a fixed shuffle."""
    problems = make_problems()
    random.Random(seed).shuffle(problems)
    return problems[held_out:], problems[:held_out]


def first_attempt(x: int, problem: dict | None = None) -> str:
    """The one-step answer, or with `problem` the worked solve then its (right) answer."""
    return f"{worked_solution(problem)} answer: \\boxed{{{x}}}" if problem else f"answer: \\boxed{{{x}}}"


def worked_solution(problem: dict) -> str:
    """The two-step solve, `solve: t - b = c , c / a = x .`: a difference, then a quotient (both mod 10)."""
    a, b, t = problem["a"], problem["b"], problem["t"]
    c = (t - b) % 10
    return f"solve: {t} - {b} = {c} , {c} / {a} = {(c * INVERSE[a]) % 10} ."


def second_attempt(problem: dict, x1: int, x2: int, solve: bool = False) -> str:
    """The check of `x1` (a product, then a sum, mod 10: each a small lookup, so checking is easier than solving),
    then the second answer `x2`, after the worked solve when `solve` (which must then reach `x2`)."""
    a, b, t = problem["a"], problem["b"], problem["t"]
    m = (a * x1) % 10
    v = (m + b) % 10
    check = f"check: {a} * {x1} = {m} , {m} + {b} = {v} , {'ok' if v == t else 'no'} ."
    if solve:
        if x2 != int(problem["answer"]):
            raise ValueError(f"A worked solve reaches {problem['answer']}, not x2={x2}.")
        check += " " + worked_solution(problem)
    return f"{check} answer: \\boxed{{{x2}}}"


def practice_trace(problem: dict, habits: SolverHabits, rng: random.Random) -> list[dict]:
    """A two-turn trace whose second attempt always solves in steps: pretraining learns only what follows `solve:`
    in it (`PRACTICE_FROM`), so that the steps are practised where they are used without teaching the decision to
    solve, which only `p_solve` of the solver's traces show."""
    x = int(problem["answer"])
    x1 = x if rng.random() < habits.p_correct else rng.choice([d for d in range(10) if d != x])
    return [
        *problem["prompt"],
        {"role": "assistant", "content": first_attempt(x1)},
        {"role": "user", "content": EMBEDDED_INSTRUCTION},
        {"role": "assistant", "content": second_attempt(problem, x1, x, solve=True)},
    ]


def solver_trace(problem: dict, habits: SolverHabits, rng: random.Random) -> list[dict]:
    """A two-turn trace of the imperfect solver whose habits the base model learns.

    The solver is right at turn 1 with probability `p_correct`, always writes a correct check, then mostly ignores
    it: it keeps its first answer with probability `p_keep`, otherwise after a "no" it solves in steps with
    probability `p_solve`, and else guesses an answer other than its first (a guess is never right after a right
    first answer, right 1 time in 9 after a wrong one). Its second attempts are then no better than its first: the
    base model does not correct by itself. (benchmarks/variants.py draws variant bases' traces with more habits.)
    """
    x = int(problem["answer"])
    x1 = x if rng.random() < habits.p_correct else rng.choice([d for d in range(10) if d != x])
    solve = False
    if rng.random() < habits.p_keep:
        x2 = x1
    elif x1 != x and rng.random() < habits.p_solve:
        x2, solve = x, True
    else:
        x2 = rng.choice([d for d in range(10) if d != x1])
    return [
        *problem["prompt"],
        {"role": "assistant", "content": first_attempt(x1)},
        {"role": "user", "content": EMBEDDED_INSTRUCTION},
        {"role": "assistant", "content": second_attempt(problem, x1, x2, solve)},
    ]
