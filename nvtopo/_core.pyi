"""Type stub of the Rust extension ``nvtopo._core`` (checked by ``mypy.stubtest``)."""

__version__: str
