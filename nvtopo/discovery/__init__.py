"""Discovery of the local node's topology through NVML (``nvidia-ml-py``)."""
