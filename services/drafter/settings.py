"""The drafter's settings: its generator (Claude with a key, offline otherwise) and its workers."""

from __future__ import annotations

from pathlib import Path

from encoders.settings import EncoderSettings
from integrations.settings import ClaudeSettings
from supportflow.settings import EvidenceSettings


class DrafterSettings(ClaudeSettings, EvidenceSettings, EncoderSettings):
    # The offline drafter's reply templates; unset: the ones shipped beside the service.
    drafter_templates_path: Path | None = None
    drafter_evidence_k: int = 4  # distinct articles the drafter asks the retriever for
    # Tickets handled at once per process: the drafter mostly waits on the retriever.
    drafter_workers: int = 4
    # Score quotable sentences with the sentence encoder as well as lexically. Better picks for
    # paraphrased questions, but each uncached sentence costs ~1 ms of CPU per word piece: about
    # 0.5 s per draft on a 2-core machine, which caps the offline pipeline near 5 tickets/s.
    drafter_sentence_embeddings: bool = False
