"""`score-trl-eval`, the evaluation command: two-turn self-correction of a model on a task's evaluation set.

score-trl-eval --task math --model_name_or_path MODEL --output_dir eval       # MATH-500, the math task's set
accelerate launch -m score_trl.eval_cli --task math --model_name_or_path MODEL ...   # one shard per process

The task, the model and the rows resolve as the pipeline resolves them (`score_trl.run_inputs`): a model evaluated
here is shown what the pipeline's evaluation shows it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from accelerate import PartialState
from trl import TrlParser

from .evaluation import EvalSettings, evaluate_checkpoint, inference_scaling, per_turn_feedback
from .loading import ModelLoadError, load_model_and_tokenizer
from .run_inputs import resolve_inputs
from .tasks import TaskArguments


logger = logging.getLogger(__name__)


@dataclass
class EvalArguments:
    """Options of `score-trl-eval`."""

    model_name_or_path: str = field(
        default="embedded",
        metadata={"help": "Hub id, path or .gguf file of the model; 'embedded' for the embedded task's base model."},
    )
    task: str = field(
        default="embedded",
        metadata={
            "help": "The task (score_trl.tasks): its evaluation set, verifier and instruction. 'embedded' (its 40 "
            "held-out problems), 'arithmetic', 'math' (MATH-500), 'code' (HumanEval), or module:attribute."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "The set to evaluate, in the task's format: hub id, local path or .jsonl file (None: the task's)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Config of the data set."})
    split: str = field(default="test", metadata={"help": "Split to evaluate."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate at most this many problems."})
    instruction: str | None = field(
        default=None, metadata={"help": "The self-correction instruction (default: the task's, from score_trl.tasks)."}
    )
    num_turns: int = field(default=2, metadata={"help": "Attempts per problem (>= 2)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Tokens generated per turn."})
    batch_size: int = field(default=16, metadata={"help": "Problems per generate call."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with --do_sample)."})
    use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Generate with vLLM (`make install-vllm`; docs/vllm.md): the same greedy answers as the default "
            "transformers path."
        },
    )
    turn_feedback: bool = field(
        default=False,
        metadata={
            "help": "Feedback turns: before each later attempt, tell the model what the task's verifier found in its "
            "last one (the task's `feedback`), as a model trained with `turn_feedback` was. False: the paper's "
            "intrinsic setting (docs/feedback.md)."
        },
    )
    first_attempts_file: str | None = field(
        default=None, metadata={"help": "JSONL of fixed first attempts ({'id', 'y1'}): turn 1 is read, not generated."}
    )
    resume: bool = field(default=False, metadata={"help": "Skip problems already in the traces file."})
    scaling_k: int = field(
        default=0,
        metadata={"help": "If > 0: inference-time scaling at k samples (k parallel vs k/2 self-corrected, voted)."},
    )
    output_dir: str = field(default="eval", metadata={"help": "Where metrics.json and traces.jsonl are written."})


def main(args: EvalArguments) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = PartialState()
    data = TaskArguments(
        task=args.task,
        eval_dataset_name=args.dataset_name,
        eval_dataset_config=args.dataset_config,
        dataset_test_split=args.split,
        max_eval_samples=args.max_samples,
    )
    inputs = resolve_inputs(data, args.model_name_or_path, with_train=False)
    settings = EvalSettings(
        num_turns=args.num_turns,
        instruction=inputs.task.turn_instruction(args.instruction),
        feedback=per_turn_feedback(inputs.task.feedback_for(args.turn_feedback)),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        do_sample=args.do_sample,
        temperature=args.temperature,
        use_vllm=args.use_vllm,
    )
    os.makedirs(args.output_dir, exist_ok=True)
    if args.scaling_k:
        model, tokenizer = load_model_and_tokenizer(inputs.model_path)
        model.to(state.device)
        result = inference_scaling(model, tokenizer, inputs.held_out, args.scaling_k, settings)
        path = os.path.join(args.output_dir, "scaling.json")
    else:
        first_attempts = None
        if args.first_attempts_file:
            with open(args.first_attempts_file) as f:
                first_attempts = {str(t["id"]): t["y1"] for t in map(json.loads, filter(str.strip, f))}
        result, _ = evaluate_checkpoint(
            inputs.model_path,
            inputs.held_out,
            inputs.task.verifier,
            settings,
            first_attempts=first_attempts,
            traces_path=os.path.join(args.output_dir, "traces.jsonl"),
            metrics_path=os.path.join(args.output_dir, "metrics.json"),
            resume=args.resume,
        )
        path = os.path.join(args.output_dir, "metrics.json")
    if state.is_main_process:
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(" | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return result


def run() -> None:
    args = TrlParser((EvalArguments,)).parse_args_and_config()
    try:
        main(*args)
    except ModelLoadError as error:  # one line, not transformers' traceback about repo ids
        raise SystemExit(f"score-trl-eval: error: {error}") from None


if __name__ == "__main__":
    run()
