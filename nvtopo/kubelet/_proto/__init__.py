"""Python messages of the kubelet's published gRPC APIs (``make kubelet-proto``; do not edit).

Generated with grpcio-tools from the ``.proto`` files of the ``k8s.io/kubelet`` Go module,
copied under ``proto/k8s.io/kubelet/``: plugin registration v1, DRA v1 and v1beta1, DRA
resource health v1. Services are bound by hand in :mod:`nvtopo.kubelet.server`.
"""
