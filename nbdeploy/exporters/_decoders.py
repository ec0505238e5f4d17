"""Hugging Face decoders as they are built (``use_cache=True``): their key/value cache as
named inputs and outputs, as optimum-onnx exports them for text generation.

A decoder called with its cache returns it as a ``DynamicCache`` object, which no torch
exporter can put in a graph. The export wraps the model: the cache comes in as tensors
``past_key_values.<layer>.key|value`` (batch, kv heads, past sequence, head size), is
rebuilt into the object the model takes, and goes out as ``present.<layer>.key|value``
with the new tokens appended. A generation loop feeds each step's ``present`` back as
the next step's ``past`` (zero-length on the first step), with ``attention_mask``
covering past and new tokens. A model configured with ``use_cache=False`` is exported
as it is: each request then computes the whole sequence.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..provenance import Lineage

if TYPE_CHECKING:
    from ._torch import _Call

log = logging.getLogger(__name__)

SEQUENCE, PAST, TOTAL = "sequence", "past_sequence", "total_sequence"
KINDS = ("key", "value")


def prepare(model: Any, call: _Call, lineage: Lineage) -> tuple[Any, Lineage]:
    """``model`` ready to export. A decoder takes sequences of any length; one that
    uses its cache is wrapped to take and return it as tensors (``call`` changes to
    feed it). Anything else is unchanged."""
    if not _is_decoder(model):
        return model, lineage
    for name, value in call.feed.items():
        if value.ndim == 2:  # token ids, masks
            call.axes[name] = {1: SEQUENCE}
    argument = _cache_argument(model, call)
    names = list(call.feed)
    if argument is None or names != ["input_ids", "attention_mask"]:
        return model, lineage  # no cache, or a call we do not know how to extend
    import torch

    with torch.no_grad():
        ids = torch.from_numpy(call.feed["input_ids"])
        mask = torch.from_numpy(call.feed["attention_mask"])
        returned = _returned_cache(model(input_ids=ids, attention_mask=mask, use_cache=True))
    if returned is None:  # an encoder (BERT) takes use_cache but keeps a cache only as a decoder
        return model, lineage
    past = _tensors(returned)
    layers = len(past) // 2
    call.names = [*names, *input_names(layers)]
    call.feed = {
        "input_ids": call.feed["input_ids"],
        "attention_mask": np.concatenate([call.feed["attention_mask"]] * 2, axis=1),
        **{name: t.numpy() for name, t in zip(input_names(layers), past, strict=True)},
    }
    call.keyword = False
    call.axes = {"input_ids": {1: SEQUENCE}, "attention_mask": {1: TOTAL},
                 **{name: {2: PAST} for name in input_names(layers)}}  # fmt: skip
    log.info("%s: exporting with its key/value cache as inputs and outputs", type(model).__name__)
    note = (
        f"the key/value cache of its {layers} layers is an input (past_key_values.*) and an "
        "output (present.*); model.config.use_cache = False exports without it"
    )
    wrapped = _WithCache(model, argument, layers)
    return wrapped, lineage.then("prepare", use_cache=True, layers=layers, why=note)


def hint(lineage: Lineage) -> str:
    """What to try when a decoder prepared here fails to export (empty for other models)."""
    prepared = next((s for s in lineage.steps if s.kind == "prepare"), None)
    if prepared is None or not prepared.detail.get("use_cache"):
        return ""
    return ("It was exported with its key/value cache as inputs and outputs; to export it "
            "without (each request then computes the whole sequence), set "
            "model.config.use_cache = False.")  # fmt: skip


def input_names(layers: int) -> list[str]:
    """``past_key_values.0.key``, ``past_key_values.0.value``, ... for ``layers`` layers."""
    return [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in KINDS]


def output_names(layers: int) -> list[str]:
    """``logits``, then ``present.0.key``, ``present.0.value``, ..."""
    return ["logits", *(f"present.{i}.{kind}" for i in range(layers) for kind in KINDS)]


def _is_decoder(model: Any) -> bool:
    """A Hugging Face model that can keep a key/value cache (its config says whether)."""
    return hasattr(getattr(model, "config", None), "use_cache") and "use_cache" in _parameters(
        model
    )


def _cache_argument(model: Any, call: _Call) -> str | None:
    """The keyword a decoder takes its cache by (``cache`` in transformers 5,
    ``past_key_values`` before), when it is configured to use one; else ``None``."""
    if not model.config.use_cache or "use_cache" in call.feed:
        return None
    parameters = _parameters(model)
    return next((p for p in ("cache", "past_key_values") if p in parameters), None)


def _parameters(model: Any) -> list[str]:
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # scripted modules, C++ extensions
        return []


def _returned_cache(output: Any) -> Any:
    """The cache a model's output carries: ``cache`` in transformers 5 (which warns on
    the old name), ``past_key_values`` before."""
    if "cache" in output:  # not .get(): its default would read the old name anyway
        return output["cache"]
    return output.past_key_values


def _tensors(cache: Any) -> list[Any]:
    """A cache object's tensors: key and value of each layer, in layer order."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [t for pair in cache.to_legacy_cache() for t in pair]  # transformers 4


def _empty_cache(transformers: Any, config: Any) -> Any:
    try:
        return transformers.DynamicCache(config=config)  # transformers 5: layer kinds
    except TypeError:
        return transformers.DynamicCache()


def _WithCache(model: Any, argument: str, layers: int) -> Any:  # noqa: N802 - reads as the class it builds
    """``model`` taking and returning its cache as tensors, with a signature naming each
    one (``past_key_values_0_key``...) so the exporter binds them in order."""
    import torch
    import transformers

    class WithCache(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.model = inner

        def forward(self, input_ids: Any, attention_mask: Any, *past: Any) -> dict[str, Any]:
            cache = _empty_cache(transformers, self.model.config)
            for layer in range(layers):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             use_cache=True, **{argument: cache})  # fmt: skip
            present = _tensors(_returned_cache(out))
            return dict(zip(output_names(layers), [out.logits, *present], strict=True))

    own = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = [own] + [
        inspect.Parameter(name.replace(".", "_"), inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for name in ["input_ids", "attention_mask", *input_names(layers)]
    ]
    vars(WithCache.forward)["__signature__"] = inspect.Signature(parameters)
    return WithCache(model)
