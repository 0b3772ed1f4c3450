"""What both SFT baselines share: sampling two-turn traces with the evaluation rollout, and an SFT run on
(x, y1, instruction) -> y2 pairs in TRL's conversational prompt/completion format (loss on the completion only)."""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ..data.rows import with_ids
from ..evaluation import EvalSettings, InstructionFn, evaluate_checkpoint


def sample_traces(
    model_path: str, rows: Sequence[dict], verifier: str, settings: EvalSettings, samples_per_problem: int
) -> list[dict]:
    """`samples_per_problem` sampled two-turn traces per problem from the model at `model_path` (ids repeat), loaded
    as every evaluation loads it (`evaluate_checkpoint`)."""
    repeated = [row for row in with_ids(rows) for _ in range(samples_per_problem)]
    sampled = EvalSettings(**{**settings.__dict__, "do_sample": True, "num_turns": 2})
    _, traces = evaluate_checkpoint(model_path, repeated, verifier, sampled)
    return traces


def pair(problem: dict, first: str, instruction: str | InstructionFn, second: str) -> dict:
    """One SFT example: prompt = [x, assistant y1, user instruction], completion = [assistant y2]. `instruction` is
    a string or, as in `EvalSettings`, a function of (row, turn, earlier attempts): the problem's own instruction
    after its own first attempt is the one trained."""
    if callable(instruction):
        instruction = instruction(problem, 2, (first,))
    return {
        "prompt": [
            *problem["prompt"],
            {"role": "assistant", "content": first},
            {"role": "user", "content": instruction},
        ],
        "completion": [{"role": "assistant", "content": second}],
        "id": str(problem["id"]),
    }


def pairs_dataset(pairs: list[dict]) -> Dataset:
    """The pairs as a Dataset, with the right columns even when there are none."""
    return Dataset.from_list(pairs) if pairs else Dataset.from_dict({"prompt": [], "completion": [], "id": []})


def sft_on_pairs(model_path: str, dataset: Dataset, args: SFTConfig) -> str:
    """Fine-tune on the pairs with TRL's SFTTrainer (completion-only loss) and save to `args.output_dir`."""
    if len(dataset) == 0:
        raise ValueError("No training pairs: the sampled traces contain none of the kind this baseline keeps.")
    trainer = SFTTrainer(
        model=model_path,
        args=args,
        train_dataset=dataset.remove_columns([c for c in dataset.column_names if c not in ("prompt", "completion")]),
        processing_class=AutoTokenizer.from_pretrained(model_path),
    )
    trainer.train()
    trainer.save_model(args.output_dir)
    return args.output_dir
