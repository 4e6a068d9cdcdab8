"""Formats: readers and writers of the files and command outputs nvtopo understands."""
