"""Re-export of ``traces.cliargs.parse_config`` for the ``agents`` verbs (the one implementation lives lowest)."""

from traces.cliargs import parse_config

__all__ = ["parse_config"]
