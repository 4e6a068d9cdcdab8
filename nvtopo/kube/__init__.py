"""Kubernetes: the one client, retries, reading the cluster back, the watched view."""
