"""The learner's settings: its configuration, its snapshots, its warm standbys and its replicas' failover."""

from __future__ import annotations

from pathlib import Path

from supportflow.settings import Settings


class LearnerSettings(Settings):
    learner_config_path: Path | None = None  # unset: learner.yaml beside the service
    # Snapshots of the shards, in Kafka (services/learner/snapshots.py): off, a shard taken is
    # always built by replaying its partition of the log from the beginning.
    learner_snapshots: bool = True
    learner_snapshot_interval_s: float = 300.0
    # Warm standbys (services/learner/standby.py): each replica also keeps every shard it does not
    # hold, applied as far as its holder, so a shard it takes is served at once. Costs each replica
    # the whole log's apply work and memory: for a few replicas.
    learner_standby: bool = False
    # How long Kafka waits for a silent replica before handing its intake partitions to another
    # (the panel is served meanwhile; only new input waits).
    learner_session_timeout_s: float = 10.0
    # Where the other replicas reach this one's gRPC port for the panels of the shards it holds
    # (services/learner/panel_owners.py): a pod's IP in Kubernetes; unset, this machine's name's address.
    learner_advertised_host: str = ""
