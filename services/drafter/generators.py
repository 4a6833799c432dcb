"""Which generator drafts: Claude when an API key is configured, the offline drafter otherwise
(and always as Claude's fallback)."""

from __future__ import annotations

from integrations.claude import claude_client

from services.drafter.answer_checks import TenantAnswerChecks
from services.drafter.claude import ClaudeDrafter
from services.drafter.offline import OfflineDrafter, TextEncoder
from services.drafter.reply import ReplyGenerator
from services.drafter.settings import DrafterSettings
from services.drafter.templates import DEFAULT_TEMPLATES_PATH, TemplateBook


def generator_from_settings(settings: DrafterSettings) -> ReplyGenerator:
    encoder: TextEncoder | None = None
    if settings.drafter_sentence_embeddings:
        from encoders.embedding import load_encoder

        encoder = load_encoder(settings.embedding_model)
    templates = TemplateBook.load(settings.drafter_templates_path or DEFAULT_TEMPLATES_PATH)
    checks = TenantAnswerChecks(settings.tenant_data_dir)
    checks.check_all()  # a malformed tenant lexicon or catalogue stops the drafter here, naming the file
    offline = OfflineDrafter(templates, encoder, checks=checks)
    if not settings.anthropic_api_key:
        return offline
    client = claude_client(settings.anthropic_api_key, settings.anthropic_base_url, timeout_s=settings.anthropic_timeout_s)
    return ClaudeDrafter(
        client, offline, templates, model=settings.anthropic_model,
        max_tokens=settings.anthropic_max_tokens, request_timeout_s=settings.anthropic_timeout_s,
    )
