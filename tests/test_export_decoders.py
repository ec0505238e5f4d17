"""Hugging Face decoders, as they are built (``use_cache=True``, the default), export:
as called with ``use_cache=False``, with batch and sequence dynamic, answering like the
model at other lengths. Small random configs of each family; nothing is downloaded."""

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
def test_a_decoder_with_its_default_cache_exports(family: str) -> None:
    model = _decoder(family)
    art = nbd.export(model, _tokens(2, 8), name=family, progress=False)
    assert art.parity is not None and art.parity.ok
    assert [s.shape_text for s in art.inputs] == ["[batch, sequence]"] * 2
    prepared = art.lineage.steps[0]
    assert (prepared.kind, prepared.detail["use_cache"]) == ("prepare", False)
    longer = _tokens(3, 13)
    got = art.run({k: v.numpy() for k, v in longer.items()})["logits"]
    with torch.no_grad():
        want = model(**longer).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_a_decoder_configured_without_its_cache_is_exported_as_it_is() -> None:
    model = _decoder("gpt2")
    model.config.use_cache = False
    art = nbd.export(model, _tokens(2, 8), name="plain", progress=False)
    assert [s.kind for s in art.lineage.steps] == ["export"]
