"""``nbd.kubeflow.pipeline``: a KFP v2 pipeline doing what a notebook does with nbdeploy.

No ``from __future__ import annotations`` here: KFP reads the pipeline function's
parameter types from its signature.
"""

import inspect
from typing import Any

from kfp import dsl

from ..deploy.kserve import MODES, Mode, Rollout
from ..deploy.manifests import check_name
from ..errors import ConfigError
from .kfp_components import components

__all__ = ["pipeline"]


def pipeline(
    *,
    base_image: str,
    name: str = "model",
    quantize: str | None = None,
    mode: Mode = "serverless",
    canary: float | None = None,
    storage_uri: str = "",
    namespace: str = "",
    kind: str = "auto",
    atol: float = 1e-4,
    rtol: float = 1e-3,
    apply: bool = True,
    packages_to_install: list[str] | None = None,
    pipeline_name: str | None = None,
) -> Any:
    """A KFP v2 pipeline: export → optimize → (quantize) → parity → deploy to KServe.

    Compile it, then submit the file::

        p = nbd.kubeflow.pipeline(base_image="registry/nbdeploy:1.0", name="digits",
                                  quantize="int8-dynamic", canary=10, atol=0.05)
        kfp.compiler.Compiler().compile(p, "digits.yaml")
        kfp.Client().create_run_from_pipeline_package(
            "digits.yaml", {"model_uri": "s3://bucket/digits.joblib",
                            "data_uri": "s3://bucket/digits-x.npy"})

    The run takes ``model_uri`` (the file a training step wrote: ``.onnx``, a joblib or
    pickle of a scikit-learn model, TorchScript, or ``.keras``) and ``data_uri`` (a
    ``.npy`` batch of inputs: the export's example, the calibration set, the parity
    check's rows). The other arguments here are the defaults of the run's parameters of
    the same names (``quantize`` is the parameter ``scheme``); a run may override them.

    Args:
        base_image: The image every step runs in: nbdeploy with the ``kubeflow`` extra
            (and ``sklearn``, ``torch`` or ``tensorflow`` for those models); see
            ``docs/kubeflow.Dockerfile``.
        name: Model and ``InferenceService`` name (a DNS label).
        quantize: An nbdeploy scheme (``"int8-dynamic"``, ``"fp16"``...), or ``None`` for
            no quantize step.
        mode: KServe's deployment mode, ``"serverless"`` (default, as KServe 0.20
            installs) or ``"standard"``; see :func:`nbdeploy.manifests`.
        canary: Percent of traffic for the new model (``None``: all of it; a run passes
            0 for none).
        storage_uri: Where KServe reads the Triton repository; empty: the deploy step's
            output artifact's URI (``minio://`` read as ``s3://``).
        namespace: The ``InferenceService``'s namespace; empty: the run's.
        kind: The model file's kind, or ``"auto"`` (by suffix, else by content).
        atol: Absolute tolerance of the parity step, which compares the model about to be
            deployed with the source model (loosen it for quantized models; the export's
            own check keeps nbdeploy's strict defaults).
        rtol: Relative tolerance of the parity step.
        apply: ``False``: write the repository and the manifest, touch no cluster.
        packages_to_install: Packages KFP installs at each step's start (none by default).
        pipeline_name: The pipeline's name in KFP (default: ``nbdeploy-<name>``).

    Returns:
        The pipeline (a KFP ``GraphComponent``), for ``kfp.compiler.Compiler().compile``.

    Raises:
        ConfigError: A name that is not a Kubernetes name, a mode or canary KServe cannot
            take.
    """
    check_name(name)
    if mode not in MODES:
        raise ConfigError(f"mode must be 'serverless' or 'standard', not {mode!r}")
    # The checks manifests() makes, now rather than in a run (the stable URI comes later,
    # from the cluster).
    Rollout(mode, canary, "stable" if mode == "standard" and canary is not None else None)
    steps = components(base_image, packages_to_install)
    with_quantize = quantize is not None

    def nbdeploy_pipeline(
        model_uri: str,
        data_uri: str,
        name: str = name,
        mode: str = mode,
        canary: float = canary or 0.0,
        storage_uri: str = storage_uri,
        namespace: str = namespace,
        kind: str = kind,
        atol: float = atol,
        rtol: float = rtol,
        apply: bool = apply,
        scheme: str = quantize or "",  # last: KFP passes the parameters in order
    ) -> None:
        """Export, optimize, (quantize,) check parity and deploy a trained model file.

        Args:
            model_uri: The model file a training step wrote (.onnx, joblib, TorchScript, .keras).
            data_uri: A .npy batch of model inputs (example, calibration, parity rows).
            name: Model and InferenceService name.
            mode: KServe deployment mode: serverless or standard.
            canary: Percent of traffic for the new model; 0 for all of it.
            storage_uri: Where KServe reads the repository; empty: the deploy output's URI.
            namespace: The InferenceService's namespace; empty: the run's.
            kind: The model file's kind, or auto.
            atol: Absolute tolerance of the parity step.
            rtol: Relative tolerance of the parity step.
            apply: False writes the repository and manifest without touching the cluster.
            scheme: The nbdeploy quantization scheme.
        """
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model).output
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset).output
        exported = steps.export(model=model, data=data, name=name, kind=kind).outputs["exported"]
        previous, candidate = exported, steps.optimize(exported=exported).outputs["optimized"]
        if with_quantize:
            previous, candidate = candidate, steps.quantize(
                optimized=candidate, data=data, scheme=scheme).outputs["quantized"]  # fmt: skip
        checked = steps.parity(model=model, candidate=candidate, previous=previous, data=data,
                               kind=kind, atol=atol, rtol=rtol)  # fmt: skip
        deployed = steps.deploy(
            candidate=candidate,
            name=name,
            storage_uri=storage_uri,
            mode=mode,
            canary=canary,
            namespace=namespace,
            apply=apply,
        )
        # It changes the cluster: a rerun must apply again, never reuse a cached success.
        deployed.after(checked).set_caching_options(False)

    if not with_quantize:  # KFP reads the run's parameters from the signature: no `scheme`
        signature = inspect.signature(nbdeploy_pipeline)
        kept = [p for p in signature.parameters.values() if p.name != "scheme"]
        # typeshed gives functions no __signature__; inspect.signature reads it all the same.
        nbdeploy_pipeline.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    description = "nbdeploy: export, optimize, quantize, check parity, deploy to KServe"
    return dsl.pipeline(name=pipeline_name or f"nbdeploy-{name}", description=description)(
        nbdeploy_pipeline
    )
