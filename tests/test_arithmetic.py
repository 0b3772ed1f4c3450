"""The generated arithmetic word problems (score_trl.data.arithmetic) and their registered task."""

import re

from score_trl.data.arithmetic import (
    ARITHMETIC_INSTRUCTION,
    ARITHMETIC_SYSTEM_PROMPT,
    ArithmeticRecipe,
    make_arithmetic_problems,
    split_arithmetic,
)
from score_trl.prompts import MATH_CORRECTION_INSTRUCTION
from score_trl.rewards.math import verify_math
from score_trl.run_inputs import resolve_inputs
from score_trl.tasks import TaskArguments, get_task


def _solve(problem: str) -> int:
    """The answer recomputed from the text alone."""
    total = int(re.search(r"has (\d+)", problem).group(1))
    for verb, n in re.findall(r"Then \w+ (buys|finds|gets|is given|gives away|loses|sells|uses) (\d+)", problem):
        total += int(n) if verb in ("buys", "finds", "gets", "is given") else -int(n)
    return total


class TestArithmeticProblems:
    def test_answers_follow_from_the_text(self):
        rows = make_arithmetic_problems(ArithmeticRecipe(num_problems=300, num_held_out=50, steps=(1, 2)))
        assert all(int(row["answer"]) == _solve(row["problem"]) >= 0 for row in rows)
        assert {row["problem"].count("Then") for row in rows} == {1, 2}
        default = make_arithmetic_problems(ArithmeticRecipe(num_problems=100, num_held_out=0))
        assert {row["problem"].count("Then") for row in default} == {1}  # the task's problems: one step

    def test_deterministic_distinct_and_split(self):
        recipe = ArithmeticRecipe(num_problems=300, num_held_out=50)
        assert make_arithmetic_problems(recipe) == make_arithmetic_problems(recipe)
        train, held_out = split_arithmetic(recipe)
        assert len(train) == 250 and len(held_out) == 50
        texts = [row["problem"] for row in train + held_out]
        assert len(set(texts)) == len(texts)
        assert make_arithmetic_problems(ArithmeticRecipe(num_problems=50, seed=1))[0] != train[0]

    def test_the_prompt_is_a_chat_with_the_boxed_answer_form(self):
        row = make_arithmetic_problems(ArithmeticRecipe(num_problems=1, num_held_out=0))[0]
        assert row["prompt"] == [
            {"role": "system", "content": ARITHMETIC_SYSTEM_PROMPT},
            {"role": "user", "content": row["problem"]},
        ]
        # The answer form the prompts ask for is one the math verifier reads.
        assert verify_math(f"Final Answer: The final answer is \\boxed{{{row['answer']}}}.", row["answer"]) == 1.0
        assert "\\boxed{5}" in ARITHMETIC_SYSTEM_PROMPT

    def test_the_instruction_is_the_papers_with_the_boxed_form(self):
        assert ARITHMETIC_INSTRUCTION.split(" At the end")[0] == MATH_CORRECTION_INSTRUCTION.split(" At the end")[0]
        assert "\\boxed{answer}" in ARITHMETIC_INSTRUCTION


def test_the_task_is_registered(tiny_model_path):
    task = get_task("arithmetic")
    assert task.verifier == "math" and task.instruction == ARITHMETIC_INSTRUCTION
    inputs = resolve_inputs(TaskArguments(task="arithmetic", max_eval_samples=10), tiny_model_path)
    assert len(inputs.train) == 1000 and len(inputs.held_out) == 10
    assert set(inputs.train.column_names) >= {"prompt", "answer"}
