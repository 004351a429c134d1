"""Orchestration: the graph description, the process launcher, the CLI and its commands, the in-process gymnasium
env, results. Nothing else imports it."""
