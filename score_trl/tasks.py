"""The task registry: for each task, where its data comes from, how it is scored and what the model is told between
attempts. The pipeline (`score_trl.pipeline`), the SFT baselines and `score-trl-eval` look tasks up here, through
`score_trl.run_inputs`, so that each default is written once.

A task of your own needs no change here: define a `Task` in your module and name it `module:attribute`
(`--task my_pkg.tasks:units`, see docs/custom_task.md); `TASKS` holds the built-in ones.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from trl import ScriptArguments, TrlParser

from .data.arithmetic import ARITHMETIC_INSTRUCTION, split_arithmetic
from .data.code import load_humaneval, load_mbpp
from .data.math import load_math
from .embedded import EMBEDDED_INSTRUCTION, base_model_path, split_problems
from .prompts import CODE_CORRECTION_INSTRUCTION, MATH_CORRECTION_INSTRUCTION, InsteadOfInstruction
from .rewards import code_reward, math_reward
from .rewards.feedback import FeedbackFunc, code_feedback, make_math_feedback, math_feedback


__all__ = ["TASKS", "Task", "TaskArguments", "get_task", "parse_with_recipe"]


@dataclass(frozen=True)
class Task:
    """What differs between tasks.

    `load_train(dataset_name, dataset_config, split)` returns the training set and `load_eval(dataset_name,
    dataset_config, split)` the evaluation rows, each row with a `prompt` and the columns `reward` reads (the names
    are the user's, else the task's defaults below); `verifier` is what evaluation scores turns with: a reward
    function (TRL's signature; usually `reward` itself) or the name of one in `score_trl.rewards.REWARD_FUNCS`
    ('math' reads an `answer` column, 'code' the tests); `base_model`, for a task that brings its own base model, returns
    its path (the `embedded` model name, or none, then names it; its argument asks for the smaller base smoke runs use);
    `trainers`, when set, are the (Stage I, Stage II) trainer classes the pipeline trains it with, e.g. subclasses
    with the task's hooks; `feedback` is what its verifier tells about an attempt when a run asks for feedback turns
    (`turn_feedback`; `score_trl.rewards.feedback`).
    """

    name: str
    load_train: Callable[[str | None, str | None, str], Dataset]
    load_eval: Callable[[str | None, str | None, str], list[dict]]
    reward: Callable
    verifier: str | Callable
    instruction: str
    dataset_name: str | None
    eval_dataset_name: str | None
    dataset_config: str | None = None
    eval_dataset_config: str | None = None
    base_model: Callable[[bool], str] | None = None
    trainers: tuple[type, type] | None = None
    feedback: FeedbackFunc | None = None

    def turn_instruction(self, chosen: str | None = None) -> str:
        """The instruction shown between attempts: `chosen` when the user set one, else this task's. The pipeline
        (for its trainers' `turn_instruction`), the SFT baselines and `score-trl-eval` all resolve it here."""
        if chosen is not None and not chosen.strip():
            raise ValueError(
                f"The instruction between attempts is {chosen!r}, which shows the model nothing: give its text, or "
                f"leave it unset for task {self.name!r}'s."
            )
        return self.instruction if chosen is None else chosen

    def feedback_for(self, turn_feedback: bool) -> FeedbackFunc | None:
        """What leads each later attempt's instruction: this task's `feedback` for a run with `turn_feedback`, None
        for the paper's intrinsic setting. The pipeline and `score-trl-eval` resolve it here."""
        if turn_feedback and self.feedback is None:
            raise ValueError(
                f"turn_feedback=True, but task {self.name!r} has no `feedback` function: give the Task one "
                "(score_trl.rewards.feedback), or set turn_feedback to False."
            )
        return self.feedback if turn_feedback else None


def _generated(split: Callable[[], tuple[list[dict], list[dict]]]) -> tuple[Callable, Callable]:
    """The loaders of a task whose problems are generated here by `split`: (training set, evaluation rows)."""

    def refuse_names(name: str | None) -> None:
        if name is not None:
            raise ValueError(
                f"A task that generates its problems reads no data set, but {name!r} was named: unset it."
            )

    def load_train(dataset_name, dataset_config, split_name):
        refuse_names(dataset_name)
        return Dataset.from_list(split()[0])

    def load_eval(dataset_name, dataset_config, split_name):
        refuse_names(dataset_name)
        return split()[1]

    return load_train, load_eval


def _load_math_train(dataset_name, dataset_config, split):
    return load_math(dataset_name, split, dataset_config)


def _load_math_eval(dataset_name, dataset_config, split):
    return load_math(dataset_name, split, dataset_config).to_list()


_EMBEDDED_TRAIN, _EMBEDDED_EVAL = _generated(split_problems)
_ARITHMETIC_TRAIN, _ARITHMETIC_EVAL = _generated(split_arithmetic)

# The embedded tokenizer knows only its task's words: "wrong" is the word its own checks write ("no"). Its tiny model
# reads the problem at fixed offsets from the instruction: two words in front of it were measured to break its turn-2
# checks (docs/results.md, issue 31), so the told instruction is the usual one with "if any" replaced by as many
# words, "no .".
_EMBEDDED_TOLD = InsteadOfInstruction(EMBEDDED_INSTRUCTION.replace("if any", "no ."))
EMBEDDED_FEEDBACK = make_math_feedback(wrong=_EMBEDDED_TOLD, unreadable=_EMBEDDED_TOLD)

TASKS: dict[str, Task] = {
    "embedded": Task(
        name="embedded",
        load_train=_EMBEDDED_TRAIN,
        load_eval=_EMBEDDED_EVAL,
        reward=math_reward,
        verifier="math",
        instruction=EMBEDDED_INSTRUCTION,
        dataset_name=None,
        eval_dataset_name=None,
        base_model=base_model_path,
        feedback=EMBEDDED_FEEDBACK,
    ),
    "arithmetic": Task(
        name="arithmetic",
        load_train=_ARITHMETIC_TRAIN,
        load_eval=_ARITHMETIC_EVAL,
        reward=math_reward,
        verifier="math",
        instruction=ARITHMETIC_INSTRUCTION,
        dataset_name=None,
        eval_dataset_name=None,
        feedback=math_feedback,
    ),
    "math": Task(
        name="math",
        load_train=_load_math_train,
        load_eval=_load_math_eval,
        reward=math_reward,
        verifier="math",
        instruction=MATH_CORRECTION_INSTRUCTION,
        dataset_name="EleutherAI/hendrycks_math",
        eval_dataset_name="HuggingFaceH4/MATH-500",
        feedback=math_feedback,
    ),
    "code": Task(
        name="code",
        load_train=load_mbpp,
        load_eval=load_humaneval,
        reward=code_reward,
        verifier="code",
        instruction=CODE_CORRECTION_INSTRUCTION,
        dataset_name="google-research-datasets/mbpp",
        eval_dataset_name="openai/openai_humaneval",
        dataset_config="full",
        feedback=code_feedback,
    ),
}


def get_task(name: str) -> Task:
    """The built-in task `name`, or the `Task` that `module:attribute` names in an importable module (the user's
    own, e.g. `my_pkg.tasks:units`); an error that says which names work otherwise."""
    if ":" in name:
        return _import_task(name)
    if name not in TASKS:
        raise ValueError(
            f"task={name!r} is not a built-in task ({sorted(TASKS)}); for a task of your own, give "
            "`module:attribute` naming a `score_trl.tasks.Task` in an importable module (e.g. my_pkg.tasks:units)."
        )
    return TASKS[name]


def _import_task(name: str) -> Task:
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(
            f"task={name!r}: cannot import {module_name!r} ({error}); put its directory on PYTHONPATH or install it."
        ) from error
    task = getattr(module, attribute, None)
    if not isinstance(task, Task):
        raise ValueError(
            f"task={name!r}: {module_name}.{attribute} is {type(task).__name__}, not a `score_trl.tasks.Task`."
        )
    return task


@dataclass
class TaskArguments(ScriptArguments):
    """Which task, which data and how to evaluate: TRL's `ScriptArguments` plus what every score-trl script shares.

    `dataset_name`, `dataset_config` (the training set) and `eval_dataset_name`, `eval_dataset_config` (the
    evaluation set) default to the task's; `dataset_test_split` is the split of the evaluation set.
    `score_trl.run_inputs.resolve_inputs` reads them.
    """

    task: str = field(
        default="math",
        metadata={
            "help": "Built-in task: 'math', 'code', 'embedded' or 'arithmetic' (both offline); or your own "
            "`score_trl.tasks.Task` as `module:attribute` (e.g. my_pkg.tasks:units)."
        },
    )
    eval_dataset_name: str | None = field(
        default=None, metadata={"help": "Evaluation set, hub id or path (None: the task's, e.g. MATH-500)."}
    )
    eval_dataset_config: str | None = field(
        default=None, metadata={"help": "Config of the evaluation set (None: the task's, when the set is the task's)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many problems."})
    eval_max_new_tokens: int = field(default=1024, metadata={"help": "Tokens per turn in evaluation."})
    eval_batch_size: int = field(default=16, metadata={"help": "Problems per generate call in evaluation."})
    torch_threads: int | None = field(default=None, metadata={"help": "torch threads per process (None: torch's)."})

    def __post_init__(self):
        get_task(self.task)
        if self.dataset_name == "embedded" and self.task != "embedded":
            raise ValueError(
                "dataset_name='embedded': the embedded task is a task of its own now: set `task: embedded`."
            )
        if self.dataset_streaming:
            raise ValueError("dataset_streaming=True: score-trl loads whole data sets; leave it False.")


def parse_with_recipe(types: tuple, default_recipe: Path | None = None, args: list[str] | None = None) -> tuple:
    """`TrlParser(types)` over the command line (or `args`), reading `default_recipe` when no `--config` is given."""
    args = sys.argv[1:] if args is None else list(args)
    if default_recipe is not None and "--config" not in args:
        args = ["--config", str(default_recipe), *args]
    return TrlParser(types).parse_args_and_config(args=args)
