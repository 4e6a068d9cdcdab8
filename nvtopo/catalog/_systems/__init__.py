"""Builders of the embedded system catalog, one module per machine family."""
