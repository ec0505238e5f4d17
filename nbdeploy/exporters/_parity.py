"""The parity check every exporter runs: source vs export, at two batch sizes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from math import inf

import numpy as np

from .._feed import batch_size
from .._progress import note
from ..artifact import Artifact
from ..errors import ArtifactError, ExampleError, ParityError
from ..provenance import OutputParity, Parity, compare_outputs
from ..types import Outputs

log = logging.getLogger(__name__)
Feed = dict[str, np.ndarray]


def grow_batch(feed: Feed) -> Feed:
    """The same inputs with the first row repeated at the end: a batch one larger.

    Repeating real rows keeps every value in the model's domain (token ids, categories).
    """
    return {k: np.concatenate([v, v[:1]]) if v.ndim else v for k, v in feed.items()}


def verify(
    art: Artifact,
    reference: Callable[[Feed], Outputs],
    feed: Feed,
    *,
    reference_name: str,
    dynamic_batch: bool,
    atol: float,
    rtol: float,
) -> Parity:
    """Run ``reference`` and ``art`` on ``feed`` (and a larger batch) and compare.

    Raises:
        ParityError: Some output is beyond tolerance; the error carries the artifact as
            ``.artifact`` so nothing is lost.
    """
    note("check parity")
    feeds = [feed, grow_batch(feed)] if dynamic_batch else [feed]
    checks = []
    for one in feeds:
        try:
            want = reference(one)
        except ExampleError as err:
            if one is feed:
                raise
            raise ExampleError(
                f"the source model itself fails at batch size {batch_size(one)}, so its batch "
                f"size is fixed: pass dynamic_batch=False (or make it batch-agnostic). {err}"
            ) from err
        try:
            got = art.run(one)
        except (ArtifactError, ExampleError) as err:
            raise _mismatch(
                art,
                f"the export of '{art.name}' fails to run at batch size {batch_size(one)}: {err}.",
                OutputParity("(all)", batch_size(one), inf, inf, ok=False),
            ) from err
        checks += compare_outputs(got, want, batch_size=batch_size(one), atol=atol, rtol=rtol)
    parity = Parity(reference_name, atol, rtol, tuple(checks))
    worst = parity.worst()
    if worst is not None and not worst.ok:
        raise _mismatch(
            art,
            f"the export of '{art.name}' differs from {reference_name} on output "
            f"'{worst.output}' at batch size {worst.batch_size}: "
            + (
                "the shapes differ or values are not finite."
                if worst.max_abs == inf
                else f"max abs error {worst.max_abs:.3g}, max rel {worst.max_rel:.3g} "
                f"(atol {atol:g}, rtol {rtol:g})."
            ),
            worst,
        )
    log.info("parity of %s: %s", art.name, parity)
    return parity


def _mismatch(art: Artifact, what: str, worst: OutputParity) -> ParityError:
    err = ParityError(
        f"{what} If only the larger batch fails, the model fixes its batch size somewhere "
        "(e.g. a reshape to a constant): fix it or pass dynamic_batch=False. If the "
        "difference is expected, loosen atol=/rtol=. The artifact is on err.artifact.",
        output=worst.output,
        max_abs=worst.max_abs,
        max_rel=worst.max_rel,
        batch_size=worst.batch_size,
        artifact=art,
    )
    return err
