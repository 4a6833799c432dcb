"""Per-tenant systems of record: where the investigator looks a customer up (the account system,
transactions and transfers, product events and logs, recent changes, open incidents), with the
credentials and the limits of each call.

One YAML file (`SUPPORTFLOW_SYSTEMS_PATH`; in Kubernetes a Secret mounted as a file) holds every
tenant's systems. `${NAME}` anywhere in it is replaced by that environment variable, as in the
channels file (supportflow/channels.py), so the file names secrets instead of holding them. A
tenant that is not in the file has no connected systems: its investigations are empty. Each
system speaks the HTTP API of docs/account-system.md; one service may serve several of them (the
demo bank's account system serves all five).

    tenants:
      demo-bank:
        account:
          base_url: https://accounts.demo-bank.example
          api_key: ${DEMO_BANK_ACCOUNTS_API_KEY}     # sent as "Authorization: Bearer <key>"
          timeout_s: 0.8                            # one call; the investigation's deadline caps it too
          attempts: 2                               # tries on a transient failure (5xx, connection, time-out)
        transactions: {base_url: https://payments.demo-bank.example, api_key: ${DEMO_BANK_PAYMENTS_API_KEY}}
        product_events: {base_url: https://events.demo-bank.example, api_key: ${DEMO_BANK_EVENTS_API_KEY}}
        changes: {base_url: https://changes.demo-bank.example}
        incidents: {base_url: https://status.demo-bank.example}
        breaker:                                    # one circuit breaker per tenant and system
          failures: 5                               # consecutive failed calls that open it
          reset_s: 30                               # how long it stays open before one trial call
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from supportflow.channels import model_from_yaml

SYSTEMS = ("account", "transactions", "product_events", "changes", "incidents")
SystemName = Literal["account", "transactions", "product_events", "changes", "incidents"]


class SystemsConfigError(ValueError):
    """The systems file cannot be used; the message names the file and lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemEndpoint(_Strict):
    base_url: str
    api_key: SecretStr = SecretStr("")  # empty: no Authorization header
    timeout_s: float = Field(default=0.8, gt=0)
    attempts: int = Field(default=2, ge=1, le=5)


class BreakerSettings(_Strict):
    failures: int = Field(default=5, ge=1)
    reset_s: float = Field(default=30.0, gt=0)


class TenantSystems(_Strict):
    account: SystemEndpoint | None = None
    transactions: SystemEndpoint | None = None
    product_events: SystemEndpoint | None = None
    changes: SystemEndpoint | None = None
    incidents: SystemEndpoint | None = None
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)

    def system(self, name: str) -> SystemEndpoint | None:
        return getattr(self, name) if name in SYSTEMS else None

    def connected(self) -> tuple[str, ...]:
        return tuple(name for name in SYSTEMS if getattr(self, name) is not None)


class SystemsConfig(_Strict):
    tenants: dict[str, TenantSystems] = Field(default_factory=dict)

    def tenant(self, tenant_id: str) -> TenantSystems | None:
        return self.tenants.get(tenant_id)

    @classmethod
    def from_yaml(cls, text: str, environ: Mapping[str, str], origin: str = "systems file") -> "SystemsConfig":
        """Parse the file's text, replacing every ${NAME} from `environ`; a variable that is not set
        is an error, named with the others, never an empty credential."""
        return model_from_yaml(cls, text, environ, origin, SystemsConfigError)


def load_systems(path: Path | None, environ: Mapping[str, str]) -> SystemsConfig:
    """The systems file at `path` (`settings.systems_path`); no file: no tenant has systems."""
    if path is None:
        return SystemsConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemsConfigError(f"SUPPORTFLOW_SYSTEMS_PATH: cannot read {path}: {exc}") from exc
    return SystemsConfig.from_yaml(text, environ, str(path))
