"""The one error tree of nbdeploy.

Every error nbdeploy raises on purpose derives from :class:`NbDeployError`, so a
notebook can catch them all with one ``except``::

    NbDeployError
    ├── MissingDependencyError      an optional package is not installed
    ├── ConfigError                 an argument has a value nbdeploy cannot use
    ├── UnsupportedModelError       the object is not a model nbdeploy can export
    ├── ExampleError                the example input does not fit the model
    ├── ExportError                 the framework's exporter failed
    │   └── ParityError             the export answers differently from the source
    ├── ArtifactError               an artifact cannot be saved, loaded or run
    ├── OptimizationError           a graph pass failed or changed the model's answers
    └── PushError                   a Triton server could not be reached, refused the
                                    model, or answers differently from the artifact

Each error carries its context as attributes and says in its message what to do next.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ConfigError",
    "ExampleError",
    "ExportError",
    "MissingDependencyError",
    "NbDeployError",
    "OptimizationError",
    "ParityError",
    "PushError",
    "UnsupportedModelError",
]


class NbDeployError(Exception):
    """Root of every error nbdeploy raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep context across pickling (e.g. from a worker process).
        return (_rebuild, (type(self), self.message, self.context))


def _rebuild(cls: type[NbDeployError], message: str, context: dict[str, Any]) -> NbDeployError:
    err = cls.__new__(cls)
    NbDeployError.__init__(err, message, **context)
    for key, value in context.items():
        setattr(err, key, value)
    return err


class MissingDependencyError(NbDeployError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'nbdeploy[{extra}]'",
            package=package,
            extra=extra,
            feature=feature,
        )
        self.package = package
        self.extra = extra


class ConfigError(NbDeployError, ValueError):
    """An argument has a value nbdeploy cannot use; the message lists the valid ones."""


class UnsupportedModelError(NbDeployError, TypeError):
    """The object given as a model is not one nbdeploy knows how to export."""

    def __init__(self, message: str, *, type_name: str) -> None:
        super().__init__(message, type_name=type_name)
        self.type_name = type_name


class ExampleError(NbDeployError, ValueError):
    """The example input is missing, of the wrong type, or does not fit the model."""


class ExportError(NbDeployError):
    """The framework's exporter could not convert the model.

    The exporter's own exception is kept as ``__cause__``; ``operator`` names the
    failing operator when it could be found.
    """

    def __init__(self, message: str, *, operator: str | None = None, **context: Any) -> None:
        super().__init__(message, operator=operator, **context)
        self.operator = operator


class ParityError(ExportError):
    """The exported model's answers differ from the source model's beyond tolerance."""

    def __init__(
        self,
        message: str,
        *,
        output: str,
        max_abs: float,
        max_rel: float,
        batch_size: int,
    ) -> None:
        super().__init__(
            message, output=output, max_abs=max_abs, max_rel=max_rel, batch_size=batch_size
        )
        self.output = output
        self.max_abs = max_abs
        self.max_rel = max_rel
        self.batch_size = batch_size


class ArtifactError(NbDeployError):
    """An artifact could not be saved, loaded or run."""


class OptimizationError(NbDeployError):
    """A graph pass crashed, or the optimized model answers differently from its input.

    ``pass_name`` names the pass found responsible (by re-running growing prefixes of
    the pipeline); ``artifact``, when set, is the input, untouched.
    """

    def __init__(self, message: str, *, pass_name: str, **context: Any) -> None:
        super().__init__(message, pass_name=pass_name, **context)
        self.pass_name = pass_name


class PushError(NbDeployError):
    """Pushing to a Triton server failed; ``target`` is the address, and the message
    carries Triton's own reason (and what to do about it)."""

    def __init__(self, message: str, *, target: str, **context: Any) -> None:
        super().__init__(message, target=target, **context)
        self.target = target
