"""A Triton Python-backend model that runs ``model.onnx`` (beside this file, as
``model.py``) on onnxruntime. Copied verbatim into model repositories; it imports only
what Triton's Python stub environment has (numpy, onnxruntime, the backend utils).

Config parameters whose keys start with ``session.`` become onnxruntime session entries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class TritonPythonModel:
    """Triton's entry points: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        options = ort.SessionOptions()
        for key, value in (config.get("parameters") or {}).items():
            if key.startswith("session."):
                options.add_session_config_entry(key, value["string_value"])
        folder = Path(args["model_repository"]) / args["model_version"]
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                feed = {
                    name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.inputs
                }
                values = self.session.run(self.outputs, feed)
                tensors = [pb_utils.Tensor(n, v) for n, v in zip(self.outputs, values, strict=True)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as err:  # the client gets onnxruntime's reason
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err))))
        return responses

    def finalize(self) -> None:
        self.session = None
