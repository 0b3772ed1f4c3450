"""`score-trl-eval`: two-turn self-correction evaluation from the command line.

score-trl-eval --model_name_or_path MODEL --dataset_name HuggingFaceH4/MATH-500 --split test --output_dir eval
accelerate launch -m score_trl.cli --model_name_or_path MODEL ...     # one shard per process
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from accelerate import PartialState
from datasets import Dataset, load_dataset
from trl import TrlParser

from .data.embedded import split_problems
from .data.embedded_model import EmbeddedRecipe, build_base_model
from .data.math import load_math, to_math_rows
from .evaluation import EvalSettings, evaluate_checkpoint, inference_scaling
from .loading import ModelLoadError, load_model_and_tokenizer
from .tasks import get_task


logger = logging.getLogger(__name__)


@dataclass
class EvalArguments:
    """Options of `score-trl-eval`."""

    model_name_or_path: str = field(
        default="embedded", metadata={"help": "Hub id or path of the model; 'embedded' for the embedded base model."}
    )
    dataset_name: str = field(
        default="embedded",
        metadata={"help": "'embedded' (its 40 held-out problems), a MATH-style hub id or path, or a .jsonl file."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Config of the data set."})
    split: str = field(default="test", metadata={"help": "Split to evaluate."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate at most this many problems."})
    verifier: str = field(default="math", metadata={"help": "Verifier by name: 'math' or 'code'."})
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
    first_attempts_file: str | None = field(
        default=None, metadata={"help": "JSONL of fixed first attempts ({'id', 'y1'}): turn 1 is read, not generated."}
    )
    resume: bool = field(default=False, metadata={"help": "Skip problems already in the traces file."})
    scaling_k: int = field(
        default=0,
        metadata={"help": "If > 0: inference-time scaling at k samples (k parallel vs k/2 self-corrected, voted)."},
    )
    output_dir: str = field(default="eval", metadata={"help": "Where metrics.json and traces.jsonl are written."})


def _load_rows(args: EvalArguments) -> list[dict]:
    if args.dataset_name == "embedded":
        return split_problems()[1]
    if args.dataset_name.endswith((".jsonl", ".json")):
        with open(args.dataset_name) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        # A local MATH-style file (MATH-500 as JSON lines: problem, answer, solution) gets the conversion a hub set gets.
        if args.verifier == "math" and rows and "prompt" not in rows[0] and "problem" in rows[0]:
            return to_math_rows(Dataset.from_list(rows)).to_list()
        return rows
    if args.verifier == "math":
        return load_math(args.dataset_name, args.split, args.dataset_config).to_list()
    return load_dataset(args.dataset_name, args.dataset_config, split=args.split).to_list()


def main(args: EvalArguments) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = PartialState()
    model_path = args.model_name_or_path
    embedded = model_path == "embedded"
    if embedded:
        with state.main_process_first():
            model_path = build_base_model(EmbeddedRecipe())
    rows = _load_rows(args)[: args.max_samples]
    task = get_task("embedded" if args.dataset_name == "embedded" else args.verifier)
    settings = EvalSettings(
        num_turns=args.num_turns,
        instruction=task.turn_instruction(args.instruction),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        do_sample=args.do_sample,
        temperature=args.temperature,
        use_vllm=args.use_vllm,
    )
    os.makedirs(args.output_dir, exist_ok=True)
    if args.scaling_k:
        model, tokenizer = load_model_and_tokenizer(model_path)
        model.to(state.device)
        result = inference_scaling(model, tokenizer, rows, args.scaling_k, settings)
        path = os.path.join(args.output_dir, "scaling.json")
    else:
        first_attempts = None
        if args.first_attempts_file:
            with open(args.first_attempts_file) as f:
                first_attempts = {str(t["id"]): t["y1"] for t in map(json.loads, filter(str.strip, f))}
        result, _ = evaluate_checkpoint(
            model_path,
            rows,
            args.verifier,
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
