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
    ├── ServerError                 the local server cannot be started or reached, or
    │   │                           refused a call (``status``: its HTTP status)
    │   └── ProtocolError           (in the server) a request that breaks the protocol
    │       └── DamagedFileError    (in the server) a repository file that cannot be read
    ├── PushError                   a Triton server could not be reached, refused the
    │                               model, or answers differently from the artifact
    ├── TritonUnavailableError      a local Triton (for tests and benchmarks) cannot run here
    └── VirtualenvError             a virtualenv of a provider's own (onnxruntime-openvino's)
                                    cannot be built, or a comparison run in it failed

Each error carries its context as attributes (kept when pickled, e.g. from a worker
process), an HTTP ``status`` where one applies, and says in its message what to do next.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DamagedFileError",
    "ExampleError",
    "ExportError",
    "MissingDependencyError",
    "NbDeployError",
    "OptimizationError",
    "ParityError",
    "ProtocolError",
    "PushError",
    "ServerError",
    "TritonUnavailableError",
    "UnsupportedModelError",
    "VirtualenvError",
]


class NbDeployError(Exception):
    """Root of every error nbdeploy raises on purpose.

    Args:
        message: What went wrong and what to do next.
        status: The HTTP status this error answers with (or came with), if any.
        **context: Facts about the failure (model name, pass name, ...), each also an
            attribute of the error.
    """

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep status and context across pickling (e.g. from a worker process).
        return (_rebuild, (type(self), self.message, self.status, self.context))


def _rebuild(
    cls: type[NbDeployError], message: str, status: int | None, context: dict[str, Any]
) -> NbDeployError:
    err = cls.__new__(cls)
    NbDeployError.__init__(err, message, status=status, **context)
    return err


class MissingDependencyError(NbDeployError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    package: str
    extra: str

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'nbdeploy[{extra}]'",
            package=package,
            extra=extra,
            feature=feature,
        )


class ConfigError(NbDeployError, ValueError):
    """An argument has a value nbdeploy cannot use; the message lists the valid ones."""


class UnsupportedModelError(NbDeployError, TypeError):
    """The object given as a model is not one nbdeploy knows how to export."""

    type_name: str

    def __init__(self, message: str, *, type_name: str) -> None:
        super().__init__(message, type_name=type_name)


class ExampleError(NbDeployError, ValueError):
    """The example input is missing, of the wrong type, or does not fit the model."""


class ExportError(NbDeployError):
    """The framework's exporter could not convert the model.

    The exporter's own exception is kept as ``__cause__``; ``operator`` names the
    failing operator when it could be found.
    """

    operator: str | None

    def __init__(self, message: str, *, operator: str | None = None, **context: Any) -> None:
        super().__init__(message, operator=operator, **context)


class ParityError(ExportError):
    """The exported model's answers differ from the source model's beyond tolerance."""

    output: str
    max_abs: float
    max_rel: float
    batch_size: int

    def __init__(
        self,
        message: str,
        *,
        output: str,
        max_abs: float,
        max_rel: float,
        batch_size: int,
        **context: Any,
    ) -> None:
        super().__init__(message, output=output, max_abs=max_abs, max_rel=max_rel,
                         batch_size=batch_size, **context)  # fmt: skip


class ArtifactError(NbDeployError):
    """An artifact could not be saved, loaded or run."""


class OptimizationError(NbDeployError):
    """A graph pass crashed, or the optimized model answers differently from its input.

    ``pass_name`` names the pass found responsible (by re-running growing prefixes of
    the pipeline); ``artifact``, when set, is the input, untouched.
    """

    pass_name: str

    def __init__(self, message: str, *, pass_name: str, **context: Any) -> None:
        super().__init__(message, pass_name=pass_name, **context)


class ServerError(NbDeployError):
    """The local server could not be started, reached or stopped, or refused a call;
    ``status`` is the HTTP status it answered with (``None`` when it did not answer)."""


class ProtocolError(ServerError):
    """Raised inside the server: a request that does not follow the protocol, or cannot
    be done; ``status`` is the HTTP status to answer (400 unless said otherwise)."""

    status: int

    def __init__(self, message: str, *, status: int = 400, **context: Any) -> None:
        super().__init__(message, status=status, **context)


class DamagedFileError(ProtocolError):
    """Raised inside the server: a file of its repository cannot be read as what it
    should be (a truncated ``traffic.json``, a config that does not parse); 503, as the
    model is unavailable until the file is mended — never a 500."""

    def __init__(self, message: str, *, status: int = 503, **context: Any) -> None:
        super().__init__(message, status=status, **context)


class PushError(NbDeployError):
    """Pushing to a Triton server failed; ``target`` is the address, and the message
    carries Triton's own reason (and what to do about it)."""

    target: str

    def __init__(self, message: str, *, target: str, **context: Any) -> None:
        super().__init__(message, target=target, **context)


class TritonUnavailableError(NbDeployError):
    """A local Triton (the nvidia-pytriton wheel's ``tritonserver``, for tests and
    benchmarks) cannot be prepared or started on this machine."""


class VirtualenvError(NbDeployError):
    """A virtualenv of a provider's own (``onnxruntime-openvino`` replaces the
    ``onnxruntime`` module, so it cannot share the project's) cannot be built here, or a
    comparison run in it failed; the message carries its output."""
