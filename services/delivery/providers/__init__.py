"""One client per channel kind, each speaking its provider's public API (docs/channels.md); only
the base URL differs between a deployment and the local stand-ins."""
