"""The subcommands of the ``logad`` CLI, one module each, each with ``register(subparsers)``."""
