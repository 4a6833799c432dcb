"""Which generator drafts: Claude when an API key is configured, the offline drafter otherwise
(and always as Claude's fallback)."""

from __future__ import annotations

from pathlib import Path

from supportflow.settings import Settings

from services.drafter.claude import ClaudeDrafter, claude_client
from services.drafter.offline import OfflineDrafter, TextEncoder
from services.drafter.reply import ReplyGenerator
from services.drafter.templates import DEFAULT_TEMPLATES_PATH, TemplateBook

# Until Settings has drafter_templates_path, the shipped templates are used.
TEMPLATES_PATH = DEFAULT_TEMPLATES_PATH


def generator_from_settings(
    settings: Settings, *, encoder: TextEncoder | None = None, templates_path: Path = TEMPLATES_PATH
) -> ReplyGenerator:
    templates = TemplateBook.load(templates_path)
    offline = OfflineDrafter(templates, encoder)
    if not settings.anthropic_api_key:
        return offline
    client = claude_client(settings.anthropic_api_key, settings.anthropic_base_url)
    return ClaudeDrafter(client, offline, templates, model=settings.anthropic_model)
