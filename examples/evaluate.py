"""Two-turn self-correction evaluation: the paper's metrics table row and every trace.

    python examples/evaluate.py --model_name_or_path MODEL --dataset_name HuggingFaceH4/MATH-500 --output_dir eval
    accelerate launch examples/evaluate.py --model_name_or_path MODEL ...      # one shard per process

Same as the console script `score-trl-eval`; `--help` lists every option.
"""

from score_trl.cli import run


if __name__ == "__main__":
    run()
