"""The paper's instructions (Kumar et al. 2024, App. C) and helpers that build two-turn conversations."""

from __future__ import annotations


__all__ = [
    "CODE_CORRECTION_INSTRUCTION",
    "MATH_CORRECTION_INSTRUCTION",
    "MATH_SYSTEM_PROMPT",
    "InsteadOfInstruction",
    "first_turn_messages",
    "next_turn_prompts",
    "with_feedback",
]

# Feedback is text from a verifier about the model's own attempt (e.g. "Your answer 12 is wrong."): kept short, so a
# long test output or answer cannot crowd the instruction out of a context window.
MAX_FEEDBACK_CHARS = 500

MATH_SYSTEM_PROMPT = (
    "You are a math expert. When you respond, respond only with the Solution of the final Problem, thinking step by "
    'step. At the end of the Solution, when you give your final answer, write it in the form "Final Answer: The final '
    'answer is $answer$. I hope it is correct."'
)

MATH_CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. Please correct "
    "the error, if any, and rewrite the solution. Only output the final solution! At the end of the Solution, when you "
    'give your final answer, write it in the form "Final Answer: The final answer is $answer$. I hope it is correct."'
)

CODE_CORRECTION_INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. Please correct the "
    "error, if any, and rewrite the solution. Only output the final correct Python program!"
)


def first_turn_messages(problem: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The turn-1 conversation: an optional system prompt, then the problem as the user's message."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": problem}]


def next_turn_prompts(
    prompts: list, attempts: list[str], instructions: list[str], instruction_template: str = "\n\n{instruction}\n\n"
) -> list:
    """What reward functions see as the prompt of the next turn: each prompt, its attempt, then the instruction.

    Conversational prompts get an assistant and a user message; plain-text prompts the attempt and
    `instruction_template`.
    """
    if prompts and isinstance(prompts[0], list):
        return [
            [*prompt, {"role": "assistant", "content": attempt}, {"role": "user", "content": instruction}]
            for prompt, attempt, instruction in zip(prompts, attempts, instructions, strict=True)
        ]
    return [
        prompt + attempt + instruction_template.format(instruction=instruction)
        for prompt, attempt, instruction in zip(prompts, attempts, instructions, strict=True)
    ]


class InsteadOfInstruction(str):
    """A feedback message shown in place of the instruction rather than in front of it: for a model that reads the
    instruction at fixed positions (the embedded task's tiny model), a told instruction of the same length."""


def with_feedback(instruction: str, feedback: str | None, max_chars: int = MAX_FEEDBACK_CHARS) -> str:
    """The instruction before the next attempt, led by what a verifier told about the last one (None: nothing, the
    paper's intrinsic setting; an `InsteadOfInstruction`: that text instead of the instruction). Feedback longer than
    `max_chars` is cut there."""
    if not feedback:
        return instruction
    if isinstance(feedback, InsteadOfInstruction):
        return str(feedback)
    if len(feedback) > max_chars:
        feedback = feedback[: max_chars - 3] + "..."
    return f"{feedback} {instruction}"
