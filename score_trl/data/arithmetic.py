r"""Arithmetic word problems, generated: a real-text task that a small instruct model (SmolLM2-135M-Instruct) can
sometimes solve, so that both turns have room.

Each problem is a short story with one addition or subtraction on small whole numbers ("Mia has 12 apples. Then Mia
buys 7 more. How many apples does Mia have now?"; `ArithmeticRecipe.steps` allows more); the gold answer is the
resulting number. The prompt is a chat: the paper's system prompt in
the form the model follows (its final answer in `\boxed{}`, which `score_trl.rewards.math` reads), then the problem.
The turn-2 instruction is the paper's, with the same answer form. docs/results.md says how the form, the difficulty
and the sampling temperature were chosen by measuring the base model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..prompts import first_turn_messages


__all__ = [
    "ARITHMETIC_INSTRUCTION",
    "ARITHMETIC_SYSTEM_PROMPT",
    "ArithmeticRecipe",
    "make_arithmetic_problems",
    "split_arithmetic",
]

# The paper's MATH prompts (App. C) with `\boxed{}` as the answer form and one worked example. Measured on
# SmolLM2-135M-Instruct (docs/results.md): with the paper's form it writes "The final answer is 22." without the
# dollars the verifier reads (0 of 32 readable); told the boxed form, still 0 of 32; shown it in a worked example in
# the system prompt, 24 of 32 (in the user message instead, 15 of 32).
ARITHMETIC_SYSTEM_PROMPT = (
    "You are a math expert. When you respond, respond only with the Solution of the final Problem, thinking step by "
    "step. At the end of the Solution, when you give your final answer, write it in the form "
    '"Final Answer: The final answer is \\boxed{answer}." Example. Problem: Tom has 3 pens. Then Tom buys 2 more. '
    "How many pens does Tom have now? Solution: Tom has 3 + 2 = 5 pens. The final answer is \\boxed{5}."
)

ARITHMETIC_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. Please correct "
    "the error, if any, and rewrite the solution. Only output the final solution! At the end of the Solution, when you "
    'give your final answer, write it in the form "Final Answer: The final answer is \\boxed{answer}."'
)

_NAMES = ["Mia", "Sam", "Lena", "Omar", "Ravi", "Ella", "Noah", "Zoe", "Liam", "Ava", "Ben", "Ida"]
_THINGS = ["apples", "stickers", "marbles", "books", "coins", "pencils", "cards", "shells", "stamps", "cookies"]
_GAIN = ["buys {n} more", "finds {n} more", "gets {n} more from a friend", "is given {n} more"]
_LOSS = ["gives away {n}", "loses {n}", "sells {n}", "uses {n}"]


@dataclass(frozen=True)
class ArithmeticRecipe:
    """What determines the problem set: its size, the held-out share, the number range and the steps per problem.

    `steps` lists the numbers of additions or subtractions after the starting amount that problems may have: one
    step only by default, where SmolLM2-135M-Instruct's sampled turn-1 accuracy is in the range RL needs
    (docs/results.md; with one or two steps its greedy accuracy fell from 0.34 to 0.22).
    """

    num_problems: int = 1200
    num_held_out: int = 200
    max_start: int = 20
    max_change: int = 9
    steps: tuple[int, ...] = (1,)
    seed: int = 0


def _problem(rng: random.Random, recipe: ArithmeticRecipe) -> tuple[str, int]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    total = rng.randint(5, recipe.max_start)
    sentences = [f"{name} has {total} {thing}."]
    for _ in range(rng.choice(recipe.steps)):
        n = rng.randint(2, recipe.max_change)
        if n < total and rng.random() < 0.5:  # no negative amounts
            sentences.append(f"Then {name} {rng.choice(_LOSS).format(n=n)}.")
            total -= n
        else:
            sentences.append(f"Then {name} {rng.choice(_GAIN).format(n=n)}.")
            total += n
    sentences.append(f"How many {thing} does {name} have now?")
    return " ".join(sentences), total


def make_arithmetic_problems(recipe: ArithmeticRecipe | None = None) -> list[dict]:
    """`recipe.num_problems` distinct rows {prompt (system + user messages), answer, id, problem}, deterministic."""
    recipe = recipe or ArithmeticRecipe()
    rng, rows, seen = random.Random(recipe.seed), [], set()
    while len(rows) < recipe.num_problems:
        text, answer = _problem(rng, recipe)
        if text in seen:
            continue
        seen.add(text)
        prompt = first_turn_messages(text, ARITHMETIC_SYSTEM_PROMPT)
        rows.append({"prompt": prompt, "answer": str(answer), "id": f"arith-{len(rows)}", "problem": text})
    return rows


def split_arithmetic(recipe: ArithmeticRecipe | None = None) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): the last `num_held_out` problems are held out from RL."""
    recipe = recipe or ArithmeticRecipe()
    rows = make_arithmetic_problems(recipe)
    return rows[: -recipe.num_held_out], rows[-recipe.num_held_out :]
