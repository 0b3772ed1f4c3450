"""The TRL privates the trainers use (score_trl/trainers/trl_internals.py): the pinned TRL passes every check, and
each check fires when TRL changes what it guards."""

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from score_trl import MultiTurnRLOOTrainer
from score_trl.rewards import completion_text
from score_trl.trainers import trl_internals
from score_trl.trainers.trl_internals import TRL_ATTRIBUTES, TRL_METHODS, TRLChangedError
from tests.test_trainers import make_args


ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(2)]


def logging_reward(prompts, completions, log_metric, log_extra, **kwargs):
    """A reward that logs a metric and a completions-table column, as TRL lets reward functions do."""
    log_metric("length", float(len(completions)))
    log_extra("note", ["seen"] * len(completions))
    return [float(len(completion_text(c)) % 3) for c in completions]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, tiny_model_path):
    args = make_args(tmp_path_factory.mktemp("guards"))
    return MultiTurnRLOOTrainer(tiny_model_path, logging_reward, args=args, train_dataset=Dataset.from_list(ROWS))


class TestPinnedTRL:
    def test_methods(self):
        trl_internals.check_methods()

    def test_a_built_trainer_has_every_attribute(self, trainer):
        trl_internals.check_attributes(trainer)

    def test_reward_logs_are_scoped_per_turn_and_trls_metrics_replaced(self, trainer):
        trainer.model.train()
        trainer._metrics["train"].clear()
        trainer._generate_and_score_completions([ROWS[0]] * 3 + [ROWS[1]] * 3)
        metrics = trainer._metrics["train"]
        assert metrics["turn1/length"] == [6.0] and metrics["turn2/length"] == [6.0] and "length" not in metrics
        assert list(trainer._logs["extra"]["turn2/note"])[-6:] == ["seen"] * 6 and "note" not in trainer._logs["extra"]
        assert not set(trl_internals.TRL_LAST_TURN_METRICS) & set(metrics)  # replaced by the per-turn ones
        assert "turn2/reward" in metrics


class TestEachGuardFires:
    @pytest.mark.parametrize("name", sorted(TRL_METHODS))
    def test_a_removed_method(self, name):
        changed = type("ChangedTrainer", (GRPOTrainer,), {name: None})
        with pytest.raises(TRLChangedError, match=f"{name} no longer exists"):
            trl_internals.check_methods(changed)

    @pytest.mark.parametrize("name", sorted(name for name, parameters in TRL_METHODS.items() if parameters))
    def test_a_method_with_other_parameters(self, name):
        changed = type("ChangedTrainer", (GRPOTrainer,), {name: lambda self, renamed, *args: None})
        with pytest.raises(TRLChangedError, match=f"{name} takes"):
            trl_internals.check_methods(changed)

    @pytest.mark.parametrize("name", TRL_ATTRIBUTES)
    def test_a_missing_attribute(self, name):
        values = {key: None for key in TRL_ATTRIBUTES if key != name}
        values.update(_metrics={"train": {}, "eval": {}}, _logs={"extra": {}, "advantages": []})
        with pytest.raises(TRLChangedError, match=name):
            trl_internals.check_attributes(SimpleNamespace(**{k: v for k, v in values.items() if k != name}))

    def test_a_missing_log_entry(self):
        values = dict.fromkeys(TRL_ATTRIBUTES)
        values.update(_metrics={"train": {}, "eval": {}}, _logs={"extra": {}})
        with pytest.raises(TRLChangedError, match="advantages"):
            trl_internals.check_attributes(SimpleNamespace(**values))

    def test_a_metric_trl_stops_logging_keeps_older_values(self, trainer, monkeypatch):
        original = GRPOTrainer._generate_and_score_completions

        def stops_logging_reward(self, inputs):
            output = original(self, inputs)
            self._metrics["train"]["reward"].pop()  # as if TRL no longer logged it for this batch
            return output

        monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", stops_logging_reward)
        trainer.model.train()
        trainer._metrics["train"]["reward"] = [0.5]  # an older batch's value (as if TRL kept logging it)
        with pytest.raises(TRLChangedError, match="'reward': 0"):
            trainer._generate_and_score_completions([ROWS[0]] * 3 + [ROWS[1]] * 3)
        assert trainer._metrics["train"]["reward"] == [0.5]

    def test_a_loss_that_no_longer_multiplies_beta(self, trainer, monkeypatch):
        monkeypatch.setattr(GRPOTrainer, "_compute_loss", lambda self, model, inputs: torch.tensor(0.0))
        with pytest.raises(TRLChangedError, match="per-turn KL weights were not applied"):
            trainer._compute_loss(trainer.model, {"turn_labels": torch.ones(1, 2, dtype=torch.long)})
        assert isinstance(trainer.beta, float) and type(trainer.beta) is float  # the scalar is put back

    def test_a_reference_that_could_not_be_named(self, tmp_path, tiny_model_path, monkeypatch):
        # as if transformers no longer called the seam during GRPOTrainer.__init__
        from transformers import Trainer

        monkeypatch.setattr(
            MultiTurnRLOOTrainer, "create_accelerator_and_postprocess", Trainer.create_accelerator_and_postprocess
        )
        args = make_args(tmp_path, ref_model_name_or_path=tiny_model_path)
        with pytest.raises(TRLChangedError, match="could not be named"):
            MultiTurnRLOOTrainer(tiny_model_path, logging_reward, args=args, train_dataset=Dataset.from_list(ROWS))


def test_on_cpu_the_fused_head_scores_only_labelled_positions_and_the_same_log_probs(tiny_model_path, monkeypatch):
    """The compact scoring gives the log-probs and gradients of scoring every position, and scores fewer rows."""
    from transformers import AutoModelForCausalLM
    from trl.kernels import chunked_logprob
    from trl.trainer import utils as trl_utils

    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)  # TRL's own choice first
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    trl_utils.add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    ids = torch.randint(0, model.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :7] = -100  # a 7-token prompt
    labels[0, 10:] = -100  # padding
    rows = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        rows.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    outputs = []
    for compact in (False, True):
        if compact:
            assert trl_internals.score_labelled_positions_on_cpu()
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        (out.log_probs.sum() + out.entropy.sum()).backward()
        grad = model.get_output_embeddings().weight.grad.clone()
        outputs.append((out.log_probs.detach(), out.entropy.detach(), grad))
    assert rows == [3 * 11, int((labels[:, 1:] != -100).sum())]
    for full, compact in zip(*outputs, strict=True):
        torch.testing.assert_close(compact, full, rtol=1e-5, atol=1e-6)
    assert outputs[0][0].abs().sum() > 0
