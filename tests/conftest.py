"""Shared fixtures. Tests that need Kafka or Weaviate ask for `local_stack` (or `settings`): the
first such test starts the real servers through the project's own scripts, and the session stops
whatever it started. A stack that was already up (`supportflow dev up`) is reused and left running.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from supportflow.eventbus import delete_namespace_topics
from supportflow.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def local_stack(base_settings: Settings):
    from supportflow.devinfra.stack import LocalStack

    stack = LocalStack(base_settings)
    stack.up(timeout_s=300)
    yield stack
    stack.down(stack.started_by_us)


@pytest.fixture
def settings(local_stack, base_settings: Settings) -> Iterator[Settings]:
    """Settings pointing at the local stack, with topics in a namespace of this test's own, deleted
    afterwards (thousands of leftover partitions slow a small broker down)."""
    own = base_settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", topic_partitions=1)
    yield own
    delete_namespace_topics(own)
