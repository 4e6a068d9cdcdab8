"""File and text formats (layer 3): nvtopo's JSON interchange, ``nvidia-smi`` text and XML,
graph and matrix views.

Each reader turns one kind of input into the model's types and refuses bad input with a
:class:`nvtopo.exceptions.ParseError` naming the place; each writer is a free function over
the model, which imports none of these modules.
"""
