"""SCoRe on code: MBPP for training, HumanEval for evaluation, rewards from the sandboxed code verifier.

There is no embedded default for code (a model small enough for a CPU does not write Python): give a recipe, whose
`task: code` names the data sets, the sandboxed reward and the instruction (score_trl.tasks).

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_code.py \\
        --config recipes/Qwen2.5-Coder-1.5B-Instruct/score/config_stage1_code.yaml --stage 1
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_code.py \\
        --config recipes/Qwen2.5-Coder-1.5B-Instruct/score/config_stage2_code.yaml --stage 2

The pipeline itself is `score_trl.pipeline.run`; copy this script to change what runs around it.
"""

import sys

from accelerate import PartialState
from trl import ModelConfig

from score_trl import MultiTurnRLOOConfig
from score_trl.pipeline import ScoreScriptArguments, parse_args, run


def main(script_args: ScoreScriptArguments, training_args: MultiTurnRLOOConfig, model_args: ModelConfig) -> None:
    run(script_args, training_args, model_args)


if __name__ == "__main__":
    if "--config" not in sys.argv:
        sys.exit(
            "examples/score_code.py needs a recipe: --config "
            "recipes/Qwen2.5-Coder-1.5B-Instruct/score/config_stage1_code.yaml (see docs/recipes.md)."
        )
    main(*parse_args())
    PartialState().destroy_process_group()
