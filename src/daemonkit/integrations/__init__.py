"""Adapters that mount daemonkit's commands in other CLI frameworks (optional dependencies)."""
