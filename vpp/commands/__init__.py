"""Subcommands of ``vpp``: each module adds its parsers in ``register(subparsers)``."""
