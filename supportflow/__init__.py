"""Supportflow: an event-driven pipeline that turns support tickets into grounded first responses."""

__version__ = "0.1.0"
