"""Tooling above the services: the `supportflow` CLI, the demo, evaluation helpers and local
stand-ins for the helpdesks (channel servers). Nothing in `supportflow/` or `services/` imports it."""
