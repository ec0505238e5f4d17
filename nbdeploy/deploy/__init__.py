"""Beyond one machine: Kubernetes and KServe manifests (:func:`manifests`)."""
