"""Generated contracts, version 1."""
