"""Generated gRPC stubs of proto/nvtopo/v1 (scripts/proto.py)."""
