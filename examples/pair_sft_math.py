"""Pair-SFT baseline (the paper's section 4): pair each wrong first attempt with a random correct response to the
same problem (D+: right ones too), one epoch of TRL's SFTTrainer on (x, y1, instruction) -> y_correct.

    python examples/pair_sft_math.py                               # embedded default (recipes/embedded/pair_sft)
"""

from pathlib import Path

from sft_baselines import run

from score_trl.baselines import run_pair_sft


def train(model_path, rows, sft_args, sampling, args):
    return run_pair_sft(model_path, rows, sft_args, sampling, "math", args.samples_per_problem, args.include_correct)


if __name__ == "__main__":
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "pair_sft" / "config_math.yaml"
    run("Pair-SFT", train, recipe)
