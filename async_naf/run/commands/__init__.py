"""Subcommands of ``async-naf`` (see ``async_naf.run.cli``)."""
