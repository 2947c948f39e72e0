"""chatgateway: a tiny example app that ships a background gateway with daemonkit."""

__version__ = "1.0"
