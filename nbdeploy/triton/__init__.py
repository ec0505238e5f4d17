"""NVIDIA Triton: model folders it can serve, and a real ``tritonserver`` on this machine.

* :mod:`.model_folder` writes a model version in Triton's layout; ``backend="python"``
  uses :mod:`.python_model` (onnxruntime inside Triton's Python backend).
* :mod:`.local` runs the ``tritonserver`` that ships in the ``nvidia-pytriton`` wheel
  (CPU only, Python backend), unpacked into a cache folder — for tests, benchmarks and
  tutorials on machines without a Triton container.
"""
