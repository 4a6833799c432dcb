"""Shared fixtures. Tests that need Kafka or Weaviate ask for `local_stack` (or `settings`): the
first such test starts the real servers through the project's own scripts, and the session stops
whatever it started. A stack that was already up (`supportflow dev up`) is reused and left running.
Tests that need PostgreSQL ask for `postgres_url`: one throwaway cluster for the session.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from supportflow.eventbus import delete_namespace_topics
from tooling.settings import FleetSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def base_settings() -> FleetSettings:
    return FleetSettings.from_env()


@pytest.fixture(scope="session")
def local_stack(base_settings: FleetSettings):
    from tooling.devinfra.stack import LocalStack

    stack = LocalStack(base_settings)
    stack.up(timeout_s=300)
    yield stack
    stack.down(stack.started_by_us)


@pytest.fixture(scope="session")
def postgres_url(base_settings: FleetSettings) -> Iterator[str]:
    """A real PostgreSQL database (a throwaway cluster started for this session, removed after it);
    only started when a test asks for it."""
    from tooling.devinfra.postgres import PostgresServer

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with PostgresServer(base_settings, f"pytest-{worker}") as url:
        yield url


@pytest.fixture
def settings(local_stack, base_settings: FleetSettings) -> Iterator[FleetSettings]:
    """FleetSettings pointing at the local stack, with topics in a namespace of this test's own, deleted
    afterwards (thousands of leftover partitions slow a small broker down)."""
    own = base_settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.", topic_partitions=1)
    yield own
    delete_namespace_topics(own)


@pytest.fixture
def second_namespace(settings: FleetSettings) -> Iterator[FleetSettings]:
    """Another namespace of this test's own beside `settings` (a one-replica run to compare with),
    deleted afterwards."""
    other = settings.replace(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    yield other
    delete_namespace_topics(other)
