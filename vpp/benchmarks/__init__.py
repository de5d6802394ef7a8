"""Benchmarks behind ``vpp bench``: each module times one part of the service."""
