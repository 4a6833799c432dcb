"""Per-tenant channel settings: which helpdesks and mailboxes a tenant is connected to, where they
are, and the credentials to verify what they send and to post back to them.

One YAML file (`SUPPORTFLOW_CHANNELS_PATH`; in Kubernetes a Secret mounted as a file) holds every
tenant's channels. `${NAME}` anywhere in it is replaced by that environment variable, so the file
can name secrets instead of holding them; `supportflow.settings.load_channels` does the reading.
The gateway uses the verification secrets; the delivery service uses the API credentials.

    tenants:
      demo-bank:
        help_center_url: https://help.demo-bank.example    # citation links: <url>/articles/<id>
        zendesk:
          base_url: https://demobank.zendesk.com
          email: supportflow@demo-bank.example             # API token auth: <email>/token:<api_token>
          api_token: ${DEMO_BANK_ZENDESK_API_TOKEN}
          webhook_secret: ${DEMO_BANK_ZENDESK_WEBHOOK_SECRET}
          queue_groups: {billing: 360001, cards: 360002}   # target queue -> Zendesk group id
        intercom:
          access_token: ${DEMO_BANK_INTERCOM_TOKEN}
          client_secret: ${DEMO_BANK_INTERCOM_CLIENT_SECRET}  # X-Hub-Signature key
          admin_id: "814860"
        freshdesk:
          base_url: https://demobank.freshdesk.com
          api_key: ${DEMO_BANK_FRESHDESK_API_KEY}
          webhook_secret: ${DEMO_BANK_FRESHDESK_WEBHOOK_SECRET}
        email:
          address: support@demo-bank.example
          smtp_host: smtp.demo-bank.example
          smtp_port: 587
          smtp_starttls: true
          smtp_username: supportflow
          smtp_password: ${DEMO_BANK_SMTP_PASSWORD}
        api:                                               # responses to tickets posted to /v1/tickets
          callback_url: https://crm.demo-bank.example/supportflow/deliveries
          signing_secret: ${DEMO_BANK_CALLBACK_SECRET}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

PROVIDERS = ("zendesk", "intercom", "freshdesk", "email", "api")
Provider = Literal["zendesk", "intercom", "freshdesk", "email", "api"]


class ChannelConfigError(ValueError):
    """The channels file cannot be used; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZendeskChannel(_Strict):
    base_url: str  # https://<subdomain>.zendesk.com
    email: str  # the API user; token auth sends "<email>/token:<api_token>"
    api_token: SecretStr
    # Zendesk signs each webhook with it (X-Zendesk-Webhook-Signature): the webhook's signing secret.
    webhook_secret: SecretStr
    help_center_locale: str = "en-us"
    # Target queue (the escalator's `target_queue`) -> Zendesk group id; unknown queues keep the group.
    queue_groups: dict[str, int] = Field(default_factory=dict)
    # Status a ticket gets when it has been answered automatically, and when a note awaits an agent.
    answered_status: str = "pending"
    review_status: str = "open"


class IntercomChannel(_Strict):
    base_url: str = "https://api.intercom.io"
    access_token: SecretStr
    # The app's client secret: Intercom signs webhook notifications with it (X-Hub-Signature, HMAC-SHA1).
    client_secret: SecretStr
    admin_id: str  # the admin (bot user) replies and notes are posted as
    api_version: str = "2.11"
    queue_teams: dict[str, str] = Field(default_factory=dict)  # target queue -> team id to assign


class FreshdeskChannel(_Strict):
    base_url: str  # https://<domain>.freshdesk.com
    api_key: SecretStr  # basic auth "<api_key>:X"
    # Freshdesk does not sign webhooks: the automation rule's webhook sends this secret in the
    # X-Supportflow-Webhook-Secret header (or as the basic-auth password, user "supportflow").
    webhook_secret: SecretStr
    queue_groups: dict[str, int] = Field(default_factory=dict)
    answered_status: int = 3  # Freshdesk's "Pending"
    review_status: int = 2  # "Open"


class EmailChannel(_Strict):
    address: str  # the support mailbox: mail to it is this tenant's, replies come from it
    display_name: str = ""
    smtp_host: str
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    # Where internal notes go for a ticket that came by email (an agents' mailbox or a helpdesk's
    # inbound address); empty: notes are recorded on the deliveries topic only.
    notes_address: str = ""


class ApiChannel(_Strict):
    """Tickets posted to the signed JSON API get their responses back as a signed callback: a POST
    of the delivery as JSON, signed like the gateway's own requests (X-Supportflow-Timestamp and
    X-Supportflow-Signature over "<timestamp>." + body with this secret)."""

    callback_url: str
    signing_secret: SecretStr


class TenantChannels(_Strict):
    help_center_url: str = ""  # article links in replies: <help_center_url>/articles/<article id>
    zendesk: ZendeskChannel | None = None
    intercom: IntercomChannel | None = None
    freshdesk: FreshdeskChannel | None = None
    email: EmailChannel | None = None
    api: ApiChannel | None = None

    def provider(self, name: str) -> ZendeskChannel | IntercomChannel | FreshdeskChannel | EmailChannel | ApiChannel | None:
        return getattr(self, name) if name in PROVIDERS else None


class ChannelsConfig(_Strict):
    tenants: dict[str, TenantChannels] = Field(default_factory=dict)

    def tenant(self, tenant_id: str) -> TenantChannels | None:
        return self.tenants.get(tenant_id)

    def tenant_for_mailbox(self, address: str) -> str | None:
        """The tenant whose support mailbox is `address` (case-insensitive), or None."""
        wanted = address.strip().lower()
        for tenant_id, channels in self.tenants.items():
            if channels.email is not None and channels.email.address.lower() == wanted:
                return tenant_id
        return None

    def article_url(self, tenant_id: str, article_id: str, fallback: str = "") -> str:
        channels = self.tenants.get(tenant_id)
        if channels is not None and channels.help_center_url:
            return f"{channels.help_center_url.rstrip('/')}/articles/{article_id}"
        return fallback

    @classmethod
    def from_yaml(cls, text: str, environ: Mapping[str, str], origin: str = "channels file") -> "ChannelsConfig":
        """Parse the file's text, replacing every ${NAME} from `environ`; a variable that is not set
        is an error, named with the others, never an empty credential."""
        return model_from_yaml(cls, text, environ, origin, ChannelConfigError)


_Model = TypeVar("_Model", bound=BaseModel)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def model_from_yaml(model: type[_Model], text: str, environ: Mapping[str, str], origin: str,
                    error: type[ValueError]) -> _Model:
    """`model` validated from YAML `text` whose ${NAME}s are read from `environ`; every problem (an
    unset variable, bad YAML, a field the model refuses) raised as `error`, naming `origin` and the
    field."""
    expanded, missing = expand_references(text, environ)
    if missing:
        raise error(f"{origin}: environment variables not set: {', '.join(sorted(set(missing)))}")
    try:
        raw = yaml.safe_load(expanded) or {}
    except yaml.YAMLError as exc:
        raise error(f"{origin}: not YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise error(f"{origin}: {problems}") from exc


def expand_references(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with every ${NAME} replaced from `environ`, and the names that were not set (each
    replaced by nothing: the caller refuses the file rather than use an empty credential)."""
    missing: list[str] = []

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            missing.append(name)
            return ""
        return environ[name]

    return _VARIABLE.sub(expand, text), missing
