"""`math_reward`'s cost on 1,000 ordinary answers against math-verify called in-process, in one run:
`python benchmarks/math_speed.py`.

The baseline is what the verifier did before it had a time limit: the same extraction and math-verify calls on this
process's main thread. The measured path sends each answer to the worker process that enforces the limit.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from trl import TrlParser

from score_trl.rewards import make_math_reward
from score_trl.rewards.math import verify_math_in_process


@dataclass
class MathSpeedArguments:
    answers: int = field(default=1000, metadata={"help": "Answers to score."})
    seed: int = field(default=0, metadata={"help": "Seed for the generated answers."})


GOLDS = [
    ("4", ["4", "4.0", "5"]),
    (r"\frac{1}{2}", ["0.5", r"\frac12", "1/3"]),
    (r"\sqrt{2}/2", [r"\frac{\sqrt{2}}{2}", r"\sqrt{3}"]),
    ("[1,2)", ["[1, 2)", "(1, 2)"]),
    (r"2\pi", [r"2\pi", r"\pi"]),
    ("x^2 + 2x + 1", ["(x+1)^2", "x^2+1"]),
    (r"\$18.90", ["18.90", "19.80"]),
    ("10", [r"10\%", "11"]),
    (r"\{1,2\}", [r"\{2, 1\}", r"\{1\}"]),
    ("-3", ["-3", "3"]),
]


def ordinary(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    completions, golds = [], []
    for _ in range(n):
        gold, answers = rng.choice(GOLDS)
        answer = rng.choice(answers)
        phrase = rng.random() < 0.5
        tail = f"The final answer is ${answer}$. I hope it is correct." if phrase else rf"\boxed{{{answer}}}"
        completions.append(f"Step by step, the work comes to {rng.randint(1, 99)}. " + tail)
        golds.append(gold)
    return completions, golds


def main(args: MathSpeedArguments) -> None:
    completions, golds = ordinary(args.answers, args.seed)
    reward = make_math_reward()
    reward([""], completions[:1], golds[:1])  # the worker's start (importing math-verify), once per process
    verify_math_in_process(completions[0], golds[0], 4000)  # and the same import here
    start = time.perf_counter()
    baseline = [verify_math_in_process(c, g, 4000) for c, g in zip(completions, golds, strict=True)]
    in_process = time.perf_counter() - start
    start = time.perf_counter()
    scores = reward([""] * len(completions), completions, golds)
    worker = time.perf_counter() - start
    assert scores == baseline, "the worker must score exactly as math-verify in-process does"
    print(f"{len(completions)} answers, {sum(s == 1.0 for s in scores)} right")
    print(f"math-verify in-process (before): {in_process:.2f} s; math_reward with the worker: {worker:.2f} s")
    print(f"ratio: {worker / in_process:.2f}x")


if __name__ == "__main__":
    (script_args,) = TrlParser(MathSpeedArguments).parse_args_and_config()
    main(script_args)
