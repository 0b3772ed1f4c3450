"""SCoRe on math: evaluate the base model, run Stage I then Stage II, evaluate again, print the before/after table.

With no arguments it runs the embedded default (recipes/embedded/score/config_math.yaml), offline on a CPU:

    accelerate launch examples/score_math.py
    accelerate launch examples/score_math.py --smoke            # a one-minute check of the whole pipeline
    accelerate launch examples/score_math.py --stage 1          # Stage I alone (then --stage 2 from its output)

On a real model and MATH, one recipe per stage:

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_math.py \\
        --config recipes/Qwen2.5-Math-1.5B-Instruct/score/config_stage1_math.yaml --stage 1
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml examples/score_math.py \\
        --config recipes/Qwen2.5-Math-1.5B-Instruct/score/config_stage2_math.yaml --stage 2

Two data-parallel processes on a CPU (gloo): `torchrun --nproc_per_node 2 examples/score_math.py --smoke`.
The pipeline itself is `score_trl.pipeline.run`; copy this script to change what runs around it.
"""

from pathlib import Path

from accelerate import PartialState
from trl import ModelConfig

from score_trl import MultiTurnRLOOConfig
from score_trl.pipeline import ScoreScriptArguments, parse_args, run


EMBEDDED_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "embedded" / "score" / "config_math.yaml"


def main(script_args: ScoreScriptArguments, training_args: MultiTurnRLOOConfig, model_args: ModelConfig) -> None:
    run(script_args, training_args, model_args)


if __name__ == "__main__":
    main(*parse_args(default_recipe=EMBEDDED_RECIPE))
    # Without it, a rank of a multi-process run can abort at exit ("terminate called without an active exception").
    PartialState().destroy_process_group()
