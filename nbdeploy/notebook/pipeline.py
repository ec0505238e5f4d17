"""What ``%deploy`` does, as a function: export → optimize → quantize → serve or push,
with a progress bar, then a card. Mistakes are checked before any slow step runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..artifact import Artifact
from ..errors import ConfigError

__all__ = ["DeployRequest", "run_pipeline"]


@dataclass
class DeployRequest:
    """Everything ``%deploy`` was asked to do."""

    model: Any
    example: Any
    name: str
    optimize: bool = True
    scheme: str | None = None
    calibration: Any = None
    target: str | None = None
    version: int | None = None
    canary: float | None = None
    dry_run: bool = False
    repository: str | None = None

    def steps(self) -> list[str]:
        steps = ["export"] + ["optimize"] * self.optimize + ["quantize"] * bool(self.scheme)
        return [*steps, *([] if self.dry_run else ["push" if self.target else "serve"])]


def run_pipeline(request: DeployRequest) -> Any:
    """Run a :class:`DeployRequest`; returns the Deployment (or PushResult, or the
    prepared Artifact for a dry run) after displaying its card."""
    from tqdm.auto import tqdm

    _check_early(request)
    art: Artifact | None = None
    result: Any = None
    made: dict[str, Artifact] = {}  # each step's artifact, for the card's parity lines
    with tqdm(total=len(request.steps()), desc="deploy", leave=False) as bar:
        for step in request.steps():
            bar.set_postfix_str(step)
            art, result = _STEPS[step](request, art)
            made[step] = art
            bar.update()
    assert art is not None
    from IPython.display import display

    from .card import DeployCard

    display(DeployCard.build(request, made, result))
    return result if result is not None else art


def _check_early(request: DeployRequest) -> None:
    """Fail in a second, not after a minute of exporting and quantizing."""
    from ..quantization.schemes import Int8Static, parse_scheme

    if request.scheme:
        scheme = parse_scheme(request.scheme)  # ConfigError lists the valid schemes
        if isinstance(scheme, Int8Static) and request.calibration is None:
            raise ConfigError(f"{request.scheme} needs calibration inputs: --calibration X_CAL")
    if request.canary is not None and request.target:
        raise ConfigError("--canary works on the local server; Triton pushes replace versions")


def _export(request: DeployRequest, _: Artifact | None) -> tuple[Artifact, None]:
    from ..exporters import export

    if isinstance(request.model, Artifact):
        return request.model, None
    return export(request.model, request.example, name=request.name), None


def _optimize(request: DeployRequest, art: Artifact | None) -> tuple[Artifact, None]:
    from ..graph.optimize import optimize

    assert art is not None
    return optimize(art, progress=False), None


def _quantize(request: DeployRequest, art: Artifact | None) -> tuple[Artifact, None]:
    from ..quantization import quantize

    assert art is not None and request.scheme
    return quantize(art, request.scheme, calibration=request.calibration), None


def _serve(request: DeployRequest, art: Artifact | None) -> tuple[Artifact, Any]:
    from ..deployment import serve

    assert art is not None
    deployment = serve(art, name=request.name, version=request.version,
                       canary=request.canary, repository=request.repository)  # fmt: skip
    return art, deployment


def _push(request: DeployRequest, art: Artifact | None) -> tuple[Artifact, Any]:
    from ..triton.push import push

    assert art is not None and request.target
    return art, push(art, request.target, name=request.name, version=request.version)


_STEPS = {"export": _export, "optimize": _optimize, "quantize": _quantize,
          "serve": _serve, "push": _push}  # fmt: skip
