"""Text and picture renderings of a topology: tables, the ``topo -m`` matrix, graphs."""
