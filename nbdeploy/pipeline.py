"""export → optimize → quantize → deploy as a list of typed steps, checked before any
slow step runs. ``%deploy``, the studio and ``nbdeploy demo`` all build one and run it.

    >>> plan = build_pipeline(model, x, name="digits", scheme="fp16")   # doctest: +SKIP
    >>> plan.labels()                                                    # doctest: +SKIP
    ['export', 'optimize', 'quantize', 'serve']
    >>> result = plan.run()                                              # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .artifact import Artifact
from .errors import ConfigError, ProtocolError
from .quantization.schemes import Int8Static, Scheme, parse_scheme
from .targets import Deployed, LocalTarget, Target, check_reachable, deploy, parse_target

__all__ = [
    "Deploy",
    "Export",
    "Optimize",
    "Pipeline",
    "PipelineResult",
    "Quantize",
    "build_pipeline",
]


@dataclass(frozen=True)
class Export:
    """The model (or an artifact, taken as it is) to an ONNX artifact, parity checked."""

    model: Any
    example: Any
    name: str
    label: str = "export"

    def run(self, art: Artifact | None) -> Artifact:
        from .exporters import export

        if isinstance(self.model, Artifact):
            return self.model
        return export(self.model, self.example, name=self.name)


@dataclass(frozen=True)
class Optimize:
    """The default graph passes, parity checked."""

    label: str = "optimize"

    def run(self, art: Artifact | None) -> Artifact:
        from .graph.optimize import optimize

        return optimize(_given(art, self.label))


@dataclass(frozen=True)
class Quantize:
    """One quantization scheme (with calibration inputs for static int8)."""

    scheme: Scheme
    calibration: Any = None
    label: str = "quantize"

    def run(self, art: Artifact | None) -> Artifact:
        from .quantization import quantize

        return quantize(_given(art, self.label), self.scheme, calibration=self.calibration)


ArtifactStep = Export | Optimize | Quantize


@dataclass(frozen=True)
class Deploy:
    """The last artifact to a target: served locally, pushed to Triton, or written."""

    target: Target
    name: str
    version: int | None = None
    canary: float | None = None
    labels: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return "serve" if isinstance(self.target, LocalTarget) else "push"

    def run(self, art: Artifact) -> Deployed:
        return deploy(art, self.target, name=self.name, version=self.version,
                      canary=self.canary, labels=self.labels)  # fmt: skip


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline made: each step's artifact (the last is what runs) and where it
    was deployed (``None`` for a dry run)."""

    made: dict[str, Artifact]
    deployed: Deployed | None
    seconds: dict[str, float] = field(default_factory=dict)  # how long each step took

    @property
    def artifact(self) -> Artifact:
        return list(self.made.values())[-1]


@dataclass(frozen=True)
class Pipeline:
    """Steps that make artifacts, then (unless a dry run) one that deploys the last."""

    name: str
    steps: tuple[ArtifactStep, ...]
    deploy: Deploy | None = None

    def labels(self) -> list[str]:
        return [step.label for step in self.steps] + ([self.deploy.label] if self.deploy else [])

    def run(self, on_step: Callable[[str], None] = lambda label: None) -> PipelineResult:
        """Run every step in order; ``on_step(label)`` is called before each."""
        made: dict[str, Artifact] = {}
        seconds: dict[str, float] = {}
        art: Artifact | None = None
        for step in self.steps:
            on_step(step.label)
            started = time.perf_counter()
            art = made[step.label] = step.run(art)
            seconds[step.label] = time.perf_counter() - started
        if self.deploy is None:
            return PipelineResult(made, None, seconds)
        on_step(self.deploy.label)
        started = time.perf_counter()
        deployed = self.deploy.run(_given(art, self.deploy.label))
        seconds[self.deploy.label] = time.perf_counter() - started
        return PipelineResult(made, deployed, seconds)


def build_pipeline(
    model: Any,
    example: Any,
    *,
    name: str,
    optimize: bool = True,
    scheme: str | Scheme | None = None,
    calibration: Any = None,
    target: str | Target | None = None,
    repository: str | None = None,
    version: int | None = None,
    canary: float | None = None,
    labels: Sequence[str] | None = None,
    dry_run: bool = False,
) -> Pipeline:
    """A pipeline for one model, every argument checked now (a second, not after a minute
    of exporting and quantizing).

    Raises:
        ConfigError: An unknown scheme or target, static int8 without calibration, or a
            canary for a target that has no traffic split.
    """
    steps: list[ArtifactStep] = [Export(model, example, name)]
    if optimize:
        steps.append(Optimize())
    if scheme is not None:
        parsed = parse_scheme(scheme)  # ConfigError lists the valid schemes
        if isinstance(parsed, Int8Static) and calibration is None:
            raise ConfigError(
                f"{scheme} needs calibration inputs: --calibration X_CAL in %deploy, "
                "calibration=X_CAL in Python (a few hundred typical inputs)"
            )
        steps.append(Quantize(parsed, calibration))
    where = parse_target(target, repository=repository)
    _check_name(name)
    if canary is not None and not isinstance(where, LocalTarget):
        raise ConfigError(f"canary works on the local server; {where} replaces versions")
    if canary is not None and not 0 < canary < 100:
        raise ConfigError(f"canary is the new version's share in percent, between 0 and 100, "
                          f"not {canary}")  # fmt: skip
    if version is not None and version < 1:
        raise ConfigError(f"version must be 1 or more, not {version}")
    if not dry_run:
        check_reachable(where)
    if labels is not None and (isinstance(labels, str) or not isinstance(where, LocalTarget)):
        raise ConfigError("labels= takes a list of class names, for the local server")
    names = tuple(str(n) for n in labels) if labels is not None else None
    final = None if dry_run else Deploy(where, name, version, canary, names)
    return Pipeline(name, tuple(steps), final)


def _check_name(name: str) -> None:
    from .server.layout import check_model_name

    try:
        check_model_name(name)
    except ProtocolError as err:
        raise ConfigError(str(err)) from None


def _given(art: Artifact | None, label: str) -> Artifact:
    if art is None:
        raise ConfigError(f"the {label} step needs an artifact: put an export step first")
    return art
