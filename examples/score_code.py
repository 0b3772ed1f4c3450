"""SCoRe on code: MBPP for training, HumanEval for evaluation, rewards from the sandboxed code verifier.

There is no embedded default for code (a model small enough for a CPU does not write Python): give a recipe.

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_code.py \\
        --config recipes/Qwen2.5-Coder-1.5B-Instruct/score/config_stage1_code.yaml --stage 1
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_code.py \\
        --config recipes/Qwen2.5-Coder-1.5B-Instruct/score/config_stage2_code.yaml --stage 2
"""

import sys

from score_math import ScriptArguments, Task, main, make_parser

from score_trl.data.code import load_code_task
from score_trl.rewards import code_reward


CODE = Task(load=load_code_task, reward=code_reward, verifier="code")


if __name__ == "__main__":
    if "--config" not in sys.argv:
        sys.exit(
            "examples/score_code.py needs a recipe: --config "
            "recipes/Qwen2.5-Coder-1.5B-Instruct/score/config_stage1_code.yaml (see docs/recipes.md)."
        )
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    if script_args.dataset_name == ScriptArguments.dataset_name:  # the math default: switch to the code sets
        script_args.dataset_name = "google-research-datasets/mbpp"
    main(script_args, training_args, model_args, CODE)
