"""The paper's SFT baselines on TRL's SFTTrainer: STaR and Pair-SFT."""

from .common import sample_traces, sft_on_pairs
from .pair_sft import pair_sft_dataset, run_pair_sft
from .star import run_star, star_dataset


__all__ = ["pair_sft_dataset", "run_pair_sft", "run_star", "sample_traces", "sft_on_pairs", "star_dataset"]
