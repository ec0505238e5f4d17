# The image for nbd.kubeflow.pipeline(base_image=...): nbdeploy installed from its wheel
# with the `kubeflow` extra (kfp, whose executor runs each step; the kubernetes client;
# tritonclient for config.pbtxt) and `sklearn`. No step installs anything at run time.
#
#   python -m build --wheel            # in a checkout: dist/nbdeploy-<version>-py3-none-any.whl
#   docker build -f docs/kubeflow.Dockerfile -t registry.example/nbdeploy:1 .
#   docker push registry.example/nbdeploy:1
#
# For TorchScript model files add torch, the CPU wheel, pinned (an unpinned torch pulls a
# CUDA build of several GB):  --build-arg TORCH=torch==2.13.0
# For .keras files add the tensorflow extra and a TensorFlow (the flavour is yours):
#   --build-arg EXTRAS=kubeflow,sklearn,tensorflow --build-arg TF=tensorflow-cpu
FROM python:3.11-slim

ARG TORCH=""
ARG TF=""
ARG EXTRAS="kubeflow,sklearn"
COPY dist/nbdeploy-*.whl /tmp/
RUN if [ -n "$TORCH" ]; then \
        pip install --no-cache-dir "$TORCH" --index-url https://download.pytorch.org/whl/cpu; \
    fi \
 && if [ -n "$TF" ]; then pip install --no-cache-dir "$TF"; fi \
 && wheel="$(ls /tmp/nbdeploy-*.whl)" \
 && pip install --no-cache-dir "nbdeploy[${EXTRAS}] @ file://${wheel}" \
 && rm /tmp/nbdeploy-*.whl \
 && python -c "import nbdeploy.kubeflow.steps, kfp, kubernetes"
