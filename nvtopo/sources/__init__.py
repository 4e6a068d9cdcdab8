"""Where topologies come from: NVML, ``nvidia-smi`` text and XML, catalog systems, files.

Each source module turns one kind of input into a :class:`nvtopo.model.NodeTopology`
and refuses bad input with a :class:`nvtopo.exceptions.ParseError` naming the place.
"""
