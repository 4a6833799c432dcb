"""Local stand-ins for a tenant's systems of record (the demo bank's account system), each its own
process, as the channel stand-ins are (tooling/channel_servers/)."""

from tooling.demo_systems.process import AccountSystemProcess, systems_file

__all__ = ["AccountSystemProcess", "systems_file"]
