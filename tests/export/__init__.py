"""Go programs built from other projects' Go modules to check nvtopo's exports (see build.py)."""
