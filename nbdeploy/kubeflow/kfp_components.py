"""The KFP components: each body is one call into ``steps``/``rollout``, run inside the
image the user names (nbdeploy installed, with the ``kubeflow`` extra).

KFP copies each function's source into the container and reads its signature for the
component's interface, so these functions import what they use inside, and this module
keeps real annotations (no ``from __future__ import annotations``). kfp has no type
hints: it is imported here and in ``build.py`` only.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

__all__ = ["Components", "components"]


def export(
    model: Input[Model],
    data: Input[Dataset],
    exported: Output[Model],
    name: str,
    kind: str,
) -> None:
    """Export the trained model file with nbdeploy, parity checked against it (strictly:
    nbdeploy's default tolerances; the parity step's are for what follows)."""
    from nbdeploy.kubeflow import steps

    steps.export_model(model.path, data.path, exported.path, name=name, kind=kind)


def optimize(exported: Input[Model], optimized: Output[Model]) -> None:
    """Run nbdeploy's default graph passes."""
    from nbdeploy.kubeflow import steps

    steps.optimize_model(exported.path, optimized.path)


def quantize(
    optimized: Input[Model], data: Input[Dataset], quantized: Output[Model], scheme: str
) -> None:
    """Quantize with an nbdeploy scheme; the data's rows calibrate static schemes."""
    from nbdeploy.kubeflow import steps

    steps.quantize_model(optimized.path, data.path, quantized.path, scheme=scheme)


def parity(
    model: Input[Model],
    candidate: Input[Model],
    previous: Input[Model],
    data: Input[Dataset],
    report: Output[Metrics],
    kind: str,
    atol: float,
    rtol: float,
) -> None:
    """Fail unless the candidate answers like the source model (or the previous step)."""
    from nbdeploy.kubeflow import steps

    steps.record_parity(steps.check_parity(model.path, candidate.path, previous.path, data.path,
                                           kind=kind, atol=atol, rtol=rtol), report)  # fmt: skip


def deploy(
    candidate: Input[Model],
    repository: Output[Artifact],
    service: Output[Artifact],
    name: str,
    storage_uri: str,
    mode: str,
    canary: float,
    namespace: str,
    apply: bool,
) -> None:
    """Write the Triton repository and create or update the KServe InferenceService."""
    from nbdeploy.kubeflow import rollout

    rollout.deploy_model(candidate.path, repository.path, service.path, name=name,
                         storage_uri=storage_uri or repository.uri, mode=mode,
                         canary=canary or None, namespace=namespace, apply=apply)  # fmt: skip


@dataclass(frozen=True)
class Components:
    """The pipeline's components, built for one image (KFP ``PythonComponent`` objects)."""

    export: Any
    optimize: Any
    quantize: Any
    parity: Any
    deploy: Any


def components(base_image: str, packages_to_install: list[str] | None = None) -> Components:
    """Each step as a KFP component running in ``base_image``.

    Args:
        base_image: An image with nbdeploy (``pip install 'nbdeploy[kubeflow,sklearn]'``
            and torch where TorchScript models come in); ``docs/kubeflow.Dockerfile``.
        packages_to_install: Packages KFP installs at each step's start (none by default:
            the image carries them, and kfp itself).
    """

    def make(func: Callable[..., None]) -> Any:
        return dsl.component(func, base_image=base_image,
                             packages_to_install=list(packages_to_install or []),
                             install_kfp_package=False)  # fmt: skip

    return Components(make(export), make(optimize), make(quantize), make(parity), make(deploy))
