"""Two-turn self-correction evaluation: the paper's metrics table row and every trace.

    python examples/evaluate.py --task math --model_name_or_path MODEL --output_dir eval     # MATH-500
    accelerate launch examples/evaluate.py --model_name_or_path MODEL ...      # one shard per process

Same as the console script `score-trl-eval`; `--help` lists every option.
"""

from score_trl.eval_cli import run


if __name__ == "__main__":
    run()
