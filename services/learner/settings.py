"""The learner's settings: its configuration, its snapshots and its replicas' failover."""

from __future__ import annotations

from pathlib import Path

from supportflow.settings import Settings


class LearnerSettings(Settings):
    learner_config_path: Path | None = None  # unset: learner.yaml beside the service
    # Snapshots of the shards, in Kafka (services/learner/snapshots.py): off, a shard taken is
    # always built by replaying its partition of the log from the beginning.
    learner_snapshots: bool = True
    learner_snapshot_interval_s: float = 300.0
    # How long Kafka waits for a silent replica before handing its intake partitions to another
    # (the panel is served meanwhile; only new input waits).
    learner_session_timeout_s: float = 10.0
    # Where the other replicas reach this one's gRPC port for the panels of the shards it holds
    # (services/learner/panel_owners.py): a pod's IP in Kubernetes; unset, this machine's name's address.
    learner_advertised_host: str = ""
