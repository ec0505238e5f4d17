"""The card ``%deploy`` shows: what runs where, whether it answers like the model, how
fast one request is through the server, and how to call it from anywhere."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from html import escape
from typing import Any

import numpy as np

from .. import _html, snippets
from .._feed import v2_json_request
from ..artifact import Artifact
from ..deployment import EXAMPLE_VALUES, Deployment
from ..live import MIME_TYPE, first_values
from ..pipeline import Pipeline, PipelineResult
from ..server import config as cfg
from ..triton.push import PushResult

log = logging.getLogger(__name__)

__all__ = ["DeployCard"]

# Copies the snippet below it and says so. An inline handler runs in trusted outputs
# (a cell just run); a saved notebook opened untrusted drops it and shows the text.
COPY_BUTTON = (
    "<button class='nbd-copy' title='copy to the clipboard' onclick=\"event.preventDefault();"
    "const b=this,t=b.closest('details').querySelector('code').innerText;"
    "navigator.clipboard.writeText(t).then(()=>{b.textContent='Copied ✓';"
    "setTimeout(()=>{b.textContent='Copy'},1500)},"
    "()=>{b.textContent='Copy failed: select the text'})\">Copy</button>"
)


@dataclass
class DeployCard:
    """A compact summary of one ``%deploy`` (``_repr_html_`` and ``__str__``)."""

    title: str
    facts: list[tuple[str, Any]]
    snippets: dict[str, str] = field(default_factory=dict)
    live: dict[str, Any] | None = None  # the deployment, for the lab extension's live view

    @classmethod
    def build(cls, plan: Pipeline, result: PipelineResult) -> DeployCard:
        """The card for a finished pipeline: every step's parity, then where the last
        artifact runs (served, pushed, or nowhere for a dry run)."""
        art = result.artifact
        steps = " → ".join(f"{label} {result.seconds[label]:.1f} s" if label in result.seconds
                           else label for label in plan.labels())  # fmt: skip
        facts: list[tuple[str, Any]] = [("model", art.name), ("steps", steps)]
        facts += _parity_facts(result.made)
        deployed = result.deployed
        if isinstance(deployed, Deployment):
            return cls._for_deployment(art, deployed, facts)
        if isinstance(deployed, PushResult):
            return cls._for_push(deployed, facts)
        return cls(f"{plan.name}: prepared (dry run), not served", facts)

    @classmethod
    def _for_push(cls, pushed: PushResult, facts: list[tuple[str, Any]]) -> DeployCard:
        facts += [("pushed to", str(pushed.folder or pushed.target)), ("version", pushed.version)]
        if pushed.parity is not None:
            facts.append(("through the wire", _html.verdict(pushed.parity.ok, str(pushed.parity))))
        return cls(f"{pushed.name} v{pushed.version} pushed ({pushed.backend})", facts)

    @classmethod
    def _for_deployment(
        cls, art: Artifact, dep: Deployment, facts: list[tuple[str, Any]]
    ) -> DeployCard:
        split = " · ".join(f"v{v} {share:g}%" for v, share in sorted(dep.traffic.items()))
        facts += [("version", dep.version), ("traffic", split), ("HTTP", dep.infer_url),
                  ("gRPC", dep.grpc_url), ("metrics", dep.metrics_url)]  # fmt: skip
        if dep.parity is not None:
            facts.append(("through the wire", _html.verdict(dep.parity.ok, str(dep.parity))))
        example = art.example or {}
        if example:
            facts.append((f"one request to v{dep.version}",
                           _probe(lambda: f"{_latency_ms(dep, art, example):.2f} ms "
                                          "(median of 10, the version named)")))  # fmt: skip
            facts.append(("its answer to the example", _probe(partial(_answer, dep))))
        for output, names in dep.labels.items():
            shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
            facts.append((f"classes of {output}", shown))
            if example:
                top = _probe(partial(_top_class, dep, art, example, output))
                facts.append((f"the example's top {output}", top))
        snippets = _snippets(dep, art, example)
        return cls(f"{dep.name} v{dep.version} is live", facts, snippets, dep.coordinates())

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        lines = [self.title] + [f"  {k}: {_plain(v)}" for k, v in self.facts]
        for kind, text in self.snippets.items():
            lines += [f"  {kind}:", *("    " + line for line in text.splitlines())]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The card as text and HTML; for a deployment, also its coordinates, which
        JupyterLab's extension renders as the card followed by the live view (traffic,
        latency, Try it, promote/rollback)."""
        bundle = {"text/plain": str(self), "text/html": self._repr_html_()}
        return bundle if self.live is None else {**bundle, MIME_TYPE: self.live}

    def _repr_html_(self) -> str:
        blocks = "".join(
            f"<details{' open' if kind == 'python' else ''}><summary>{escape(kind)} "
            f"{COPY_BUTTON}</summary><pre><code>{escape(text)}</code></pre></details>"
            for kind, text in self.snippets.items()
        )
        return _html.card(self.title, _html.fields(self.facts) + blocks)


def _parity_facts(made: dict[str, Artifact]) -> list[tuple[str, Any]]:
    """What each step's check found: export and optimize must not change the answers;
    quantization changes them by design, so its line reports by how much."""
    facts: list[tuple[str, Any]] = []
    for step, label in (("export", "export parity"), ("optimize", "optimize parity")):
        parity = made[step].parity if step in made else None
        if parity is not None:
            facts.append((label, _html.verdict(parity.ok, str(parity))))
    quantized = made.get("quantize")
    if quantized is not None and quantized.parity is not None:
        scheme = quantized.lineage.steps[-1].detail.get("scheme")
        facts.append(("vs unquantized", f"max abs difference {quantized.parity.max_abs:.3g} "
                      f"({scheme})"))  # fmt: skip
    return facts


def _plain(value: Any) -> str:
    """A fact as terminal text (verdicts carry markup for the HTML card)."""
    return re.sub(r"<[^>]+>", "", str(value))


def _probe(measure: Callable[[], str]) -> str:
    """What a card measures through the server, or why it could not: the model is live
    by now, and a failed measurement must not turn the deploy into an exception."""
    try:
        return measure()
    except Exception as err:  # the card says what went wrong instead of raising
        log.warning("the card could not measure the deployment: %s", err)
        return f"not measured: {str(err).splitlines()[0][:200]}"


def _latency_ms(dep: Any, art: Artifact, example: dict[str, np.ndarray]) -> float:
    """The median of 10 requests to the version the card describes (not drawn by the
    traffic split: a canary's card measures the canary)."""
    from ..triton.client import inputs

    client = dep.client()
    try:
        items = inputs(client, art.inputs, example)
        times = []
        for _ in range(10):
            start = time.perf_counter()
            client.infer(dep.name, items, model_version=str(dep.version))
            times.append(time.perf_counter() - start)
    finally:
        client.close()
    return float(np.median(times) * 1e3)


def _answer(dep: Deployment) -> str:
    """What the version answered to the example's first rows (``dep.try_it()``)."""
    tried = dep.try_it()
    return "; ".join(f"{name} {list(value.shape)}: {first_values(value, 4)}"
                     for name, value in tried.outputs.items())  # fmt: skip


def _top_class(dep: Any, art: Artifact, example: dict[str, np.ndarray], output: str) -> str:
    """The first example row's top class, asked of the server as any client would
    (Triton's classification: ``"score:index:label"``)."""
    import tritonclient.http as httpclient

    from ..triton.client import inputs

    client = dep.client()
    wanted = [httpclient.InferRequestedOutput(output, class_count=1)]
    try:
        answer = client.infer(dep.name, inputs(client, art.inputs, example), outputs=wanted,
                              model_version=str(dep.version))  # fmt: skip
    finally:
        client.close()
    top = np.asarray(answer.as_numpy(output)).reshape(-1)[0]
    score, _, label = (top.decode() if isinstance(top, bytes) else str(top)).partition(":")
    return f"{label.partition(':')[2] or label} (score {float(score):.3g})"


def _snippets(dep: Deployment, art: Artifact, example: dict[str, np.ndarray]) -> dict[str, str]:
    """The calls the sidebar's copy buttons give for this version (one generator for
    both): tritonclient in Python, runnable as pasted in this notebook too (names of its
    own, the example's first row, a comment saying what to put there), and curl."""
    inputs = [{"name": spec.name, "datatype": cfg.v2_datatype(spec.dtype),
               "shape": [d if isinstance(d, int) else -1 for d in spec.shape]}
              for spec in art.inputs]  # fmt: skip
    request = v2_json_request(example, art.inputs, max_values=EXAMPLE_VALUES) if example else None
    where = (dep.http_url, dep.name, dep.version, inputs, request)
    return {"python": snippets.python(*where), "curl": snippets.curl(*where)}
