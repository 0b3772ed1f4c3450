"""STaR baseline for self-correction (the paper's section 4): sample two-turn traces, keep wrong -> right (D+: and
right -> right), fine-tune on turn 2 with TRL's SFTTrainer, repeat from the latest model.

    python examples/star_math.py                                   # embedded default (recipes/embedded/star)
    accelerate launch examples/star_math.py --config my_recipe.yaml --model_name_or_path Qwen/Qwen2.5-Math-1.5B-Instruct
"""

from pathlib import Path

from accelerate import PartialState

from score_trl.baselines.script import parse_baseline_args, run_baseline


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "star" / "config_math.yaml"

if __name__ == "__main__":
    run_baseline("STaR", *parse_baseline_args(default_recipe=RECIPE))
    PartialState().destroy_process_group()  # a rank of a multi-process run can otherwise abort at exit
