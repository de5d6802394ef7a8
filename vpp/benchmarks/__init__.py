"""Benchmarks of ``vpp bench NAME``: each module measures one path and returns one JSON object."""
