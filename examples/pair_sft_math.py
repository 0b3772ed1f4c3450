"""Pair-SFT baseline (the paper's section 4): pair each wrong first attempt with a random correct response to the
same problem (D+: right ones too), one epoch of TRL's SFTTrainer on (x, y1, instruction) -> y_correct.

    python examples/pair_sft_math.py                               # embedded default (recipes/embedded/pair_sft)
"""

from pathlib import Path

from accelerate import PartialState

from score_trl.baselines.script import parse_baseline_args, run_baseline


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "pair_sft" / "config_math.yaml"

if __name__ == "__main__":
    run_baseline("Pair-SFT", *parse_baseline_args(default_recipe=RECIPE))
    PartialState().destroy_process_group()  # a rank of a multi-process run can otherwise abort at exit
