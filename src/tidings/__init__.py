"""Tidings: a self-hosted engine for custom events and the automations they trigger."""

__version__ = "0.1.0"
