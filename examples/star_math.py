"""STaR baseline for self-correction (the paper's section 4): sample two-turn traces, keep wrong -> right (D+: and
right -> right), fine-tune on turn 2 with TRL's SFTTrainer, repeat from the latest model.

    python examples/star_math.py                                   # embedded default (recipes/embedded/star)
    accelerate launch examples/star_math.py --config my_recipe.yaml --model_name_or_path Qwen/Qwen2.5-Math-1.5B-Instruct
"""

from pathlib import Path

from sft_baselines import run

from score_trl.baselines import run_star


def train(model_path, rows, sft_args, sampling, args):
    return run_star(
        model_path, rows, sft_args, sampling, "math", args.iterations, args.samples_per_problem, args.keep_correct
    )


if __name__ == "__main__":
    run("STaR", train, Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "star" / "config_math.yaml")
