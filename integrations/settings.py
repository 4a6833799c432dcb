"""What the outside systems' clients read: the CRM's location and Claude's key, model and limits."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from supportflow.settings import ENV_PREFIX, Settings


class CrmSettings(Settings):
    """For the services that look customers up (the classifier's tier, the escalator's packets)."""

    # A JSON export or an http(s) base URL (GET {url}/customers/{id}). Unset: no CRM, so every
    # customer is standard tier with nothing known of the account (integrations/crm.py).
    crm_location: str = ""
    crm_timeout_s: float = 0.5


class ClaudeSettings(Settings):
    """For the services that call Claude (the classifier's assist, the drafter): without a key
    neither does, and both work offline."""

    # The SDK's own variable, ANTHROPIC_API_KEY, is honoured too, so a key set the usual way works.
    anthropic_api_key: str = Field("", validation_alias=AliasChoices(ENV_PREFIX + "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"))
    anthropic_base_url: str = ""
    anthropic_model: str = ""
    anthropic_timeout_s: float = 20.0
    anthropic_max_tokens: int = 1024
