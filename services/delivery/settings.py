"""The delivery service's settings: its ledger and how it calls the providers."""

from __future__ import annotations

from supportflow.settings import ChannelSettings


class DeliverySettings(ChannelSettings):
    # Where the ledger of what was posted lives (SQLAlchemy URL; unset: a SQLite file under
    # cache_dir), how long one provider call may take and how many times it is tried.
    delivery_ledger_url: str = ""
    delivery_timeout_s: float = 10.0
    delivery_max_attempts: int = 5
    # The longest a provider's Retry-After is honoured before the attempt counts as failed.
    delivery_max_retry_after_s: float = 30.0
    delivery_workers: int = 8

    @property
    def ledger_url(self) -> str:
        return self.delivery_ledger_url or f"sqlite:///{self.cache_dir / 'state' / 'delivery-ledger.sqlite'}"
