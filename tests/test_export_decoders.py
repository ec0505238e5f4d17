"""Hugging Face decoders, as they are built (``use_cache=True``, the default), export with
their key/value cache as named inputs and outputs (as optimum-onnx does), and a
generation loop feeding each step's cache back answers as the model does on the whole
sequence; configured with ``use_cache=False`` they export without it. Small random
configs of each family; nothing is downloaded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nbdeploy as nbd

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

SMALL = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 64}  # fmt: skip
FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             {"vocab_size": 300, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64,
              "bos_token_id": 0, "eos_token_id": 0}),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {**SMALL, "num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {**SMALL, "num_key_value_heads": 2}),
    "phi": ("PhiConfig", "PhiForCausalLM", SMALL),
}  # fmt: skip


def _decoder(family: str) -> Any:
    config_class, model_class, settings = FAMILIES[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**settings)
    assert config.use_cache  # as users get them
    return getattr(transformers, model_class)(config).eval()


def _tokens(batch: int, length: int) -> dict[str, Any]:
    ids = torch.randint(0, 300, (batch, length), generator=torch.Generator().manual_seed(length))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_decoder_with_its_default_cache_exports_it_as_inputs_and_outputs(family: str) -> None:
    model = _decoder(family)
    art = nbd.export(model, _tokens(2, 8), name=family, progress=False)
    assert art.parity is not None and art.parity.ok
    layers = model.config.num_hidden_layers
    names = [s.name for s in art.inputs]
    assert names[:2] == ["input_ids", "attention_mask"] and len(names) == 2 + 2 * layers
    assert names[2:4] == ["past_key_values.0.key", "past_key_values.0.value"]
    shapes = {s.name: s.shape_text for s in art.inputs}
    assert shapes["input_ids"] == "[batch, sequence]"
    assert shapes["attention_mask"] == "[batch, total_sequence]"
    assert shapes["past_key_values.0.key"].startswith("[batch, ")
    assert "past_sequence" in shapes["past_key_values.0.key"]
    assert [s.name for s in art.outputs][:3] == ["logits", "present.0.key", "present.0.value"]
    prepared = art.lineage.steps[0]
    assert (prepared.kind, prepared.detail["use_cache"]) == ("prepare", True)
    _generates_as_the_model_does(art, model, layers)


def _generates_as_the_model_does(art: nbd.Artifact, model: Any, layers: int) -> None:
    """A prompt with an empty cache, then one token at a time with the cache fed back:
    each step's logits are the model's on the whole sequence so far, without a cache."""
    prompt = _tokens(3, 5)
    ids = prompt["input_ids"].numpy()
    heads_and_size = {s.name: s.shape for s in art.inputs}["past_key_values.0.key"][1::2]
    empty = np.zeros((3, heads_and_size[0], 0, heads_and_size[1]), np.float32)
    past = {
        f"past_key_values.{i}.{kind}": empty for i in range(layers) for kind in ("key", "value")
    }
    new = ids
    for _ in range(3):
        out = art.run({"input_ids": new, "attention_mask": np.ones_like(ids), **past})
        with torch.no_grad():
            whole = model(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()
        np.testing.assert_allclose(out["logits"], whole[:, -new.shape[1] :], atol=1e-4, rtol=1e-3)
        past = {name.replace("present", "past_key_values"): value for name, value in out.items()
                if name.startswith("present.")}  # fmt: skip
        new = out["logits"][:, -1:].argmax(-1)
        ids = np.concatenate([ids, new], axis=1)


def test_a_decoder_configured_without_its_cache_takes_whole_sequences() -> None:
    model = _decoder("gpt2")
    model.config.use_cache = False
    art = nbd.export(model, _tokens(2, 8), name="plain", progress=False)
    assert [s.kind for s in art.lineage.steps] == ["export"]
    assert [s.shape_text for s in art.inputs] == ["[batch, sequence]"] * 2
    longer = _tokens(3, 13)
    got = art.run({k: v.numpy() for k, v in longer.items()})["logits"]
    with torch.no_grad():
        want = model(**longer).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_an_encoder_that_takes_use_cache_but_keeps_no_cache_exports_as_an_encoder() -> None:
    """BERT's forward takes use_cache and its config says True, as built; it keeps a
    cache only when configured as a decoder. Seen exporting a BERT-base-sized model."""
    torch.manual_seed(0)
    config = transformers.BertConfig(**SMALL)
    assert config.use_cache and not config.is_decoder
    model = transformers.BertModel(config).eval()
    art = nbd.export(model, _tokens(2, 8), name="bert", progress=False)
    assert [s.name for s in art.inputs] == ["input_ids", "attention_mask"]
    assert not any(s.name.startswith("present") for s in art.outputs)
    longer = _tokens(3, 13)
    got = art.run({k: v.numpy() for k, v in longer.items()})["last_hidden_state"]
    with torch.no_grad():
        want = model(**longer).last_hidden_state.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_when_the_export_with_the_cache_fails_the_error_says_how_to_export_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuses(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator aten::made_up")

    monkeypatch.setattr(torch.onnx, "export", refuses)
    with pytest.raises(nbd.ExportError, match=r"set model\.config\.use_cache = False") as info:
        nbd.export(_decoder("llama"), _tokens(2, 8), progress=False)
    assert "convert transformers.models.llama" in str(info.value)  # the user's class
