"""The local inference server (KServe V2 / Open Inference Protocol, Triton-compatible).

Layers, bottom up: ``codecs`` (pure: V2 JSON and binary tensors), then the runtime,
dataplane and HTTP/gRPC front ends as they land.
"""
