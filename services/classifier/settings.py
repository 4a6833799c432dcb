"""The classifier's settings: its intent models, its routing policy, Claude's assist."""

from __future__ import annotations

from pathlib import Path

from encoders.settings import EncoderSettings
from integrations.settings import ClaudeSettings, CrmSettings


class ClassifierSettings(ClaudeSettings, CrmSettings, EncoderSettings):
    intent_model_dir: Path | None = None
    # Tenants' own intent models: <dir>/<tenant>/ from `supportflow classifier train --tenant`; a
    # tenant without one is classified with intent_model_dir's. Unset: no tenant has its own.
    intent_models_dir: Path | None = None
    # The routing policy file; unset: the one shipped beside the service. Re-read when it changes.
    routing_policy_path: Path | None = None
    # With an API key, low-confidence tickets go to Claude for extraction, at most this many a
    # minute (0: never), each call bounded by the timeout (the triage path must not stall).
    classifier_claude_assist_per_minute: int = 30
    classifier_claude_timeout_s: float = 4.0
    # Tickets classified at once per process (the model's inference releases the GIL).
    classifier_workers: int = 2
