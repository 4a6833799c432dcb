"""What the channel servers are told: each tenant's accounts on the providers, and where to write.

The parent (`ChannelServers`) writes this as JSON for the child process (`python -m
tooling.channel_servers --config <file>`); both sides read it with `ChannelServersConfig.from_json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TenantAccounts:
    """What the servers expect from, and send to, Supportflow for one tenant."""

    tenant: str
    gateway_url: str  # webhooks go to f"{gateway_url}/v1/channels/<provider>/{tenant}"; "" = no webhooks
    zendesk_email: str
    zendesk_api_token: str
    zendesk_webhook_secret: str
    intercom_access_token: str
    intercom_client_secret: str
    intercom_admin_id: str
    freshdesk_api_key: str
    freshdesk_webhook_secret: str
    mailbox: str  # the tenant's support address, e.g. "support@demo-bank.example"
    help_center_dir: str = ""  # Markdown articles with YAML front matter; "" = an empty help center
    # Key of the API channel's callback signature (docs/channels.md, "The API channel's callback");
    # "" = callbacks for this tenant are refused.
    api_callback_secret: str = ""

    def webhook_url(self, provider: str) -> str:
        if not self.gateway_url:
            return ""
        return f"{self.gateway_url.rstrip('/')}/v1/channels/{provider}/{self.tenant}"

    @property
    def mail_domain(self) -> str:
        return self.mailbox.rpartition("@")[2].lower()


@dataclass(frozen=True)
class ChannelServersConfig:
    tenants: tuple[TenantAccounts, ...]
    state_dir: str  # the child's log, ports.json and the JSONL of what the servers received
    gateway_smtp: str = ""  # "host:port" of the gateway's SMTP listener: customer mail goes there
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        names = [t.tenant for t in self.tenants]
        if not names:
            raise ValueError("channel servers need at least one tenant")
        if len(set(names)) != len(names):
            raise ValueError(f"a tenant appears twice: {names}")

    def tenant(self, name: str) -> TenantAccounts:
        for accounts in self.tenants:
            if accounts.tenant == name:
                return accounts
        raise KeyError(f"unknown tenant {name!r} (known: {', '.join(t.tenant for t in self.tenants)})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ChannelServersConfig":
        raw = json.loads(text)
        known = {f.name for f in fields(TenantAccounts)}
        tenants = []
        for entry in raw.get("tenants", []):
            unknown = set(entry) - known
            if unknown:
                raise ValueError(f"unknown tenant account fields: {sorted(unknown)}")
            tenants.append(TenantAccounts(**entry))
        return cls(tenants=tuple(tenants), state_dir=raw["state_dir"], gateway_smtp=raw.get("gateway_smtp", ""),
                   host=raw.get("host", "127.0.0.1"))
