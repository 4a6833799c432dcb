"""The escalator's settings: its configuration files, its faust tables, its peer lookups, and
whether actions run."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from integrations.settings import CrmSettings
from supportflow.settings import EvidenceSettings


class EscalatorSettings(CrmSettings, EvidenceSettings):
    # Unset: the files shipped beside the service.
    escalation_config_path: Path | None = None
    action_limits_path: Path | None = None
    # The faust tables (services/escalator/agents.py): "memory://" keeps them in process memory,
    # recovered from their changelogs at each start (tests, small deployments); "rocksdb://" keeps
    # them on disk under escalator_table_dir (default: <cache_dir>/escalator-tables; each replica
    # needs its own), so a restart reads only what its disk lacks. Standby replicas keep a warm copy
    # of other replicas' tables for fast failover.
    escalator_table_store: str = "memory://"
    escalator_table_dir: Path | None = None
    escalator_standby_replicas: int = 0
    # How long Kafka waits for a silent replica before handing its partitions to another (a
    # crashed one: this is most of the failover time).
    escalator_session_timeout_s: float = 10.0
    # Peer lookups (similar cases, articles, investigations) a replica runs at once, started ahead
    # for the events of a batch while it decides them in order.
    escalator_lookup_concurrency: int = Field(default=8, ge=1)
    # Actions (refunds, resets, plan changes) are recorded but not executed unless this is false.
    actions_dry_run: bool = True
