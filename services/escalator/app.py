"""The escalator's faust application, and nothing else: its agent and tables live beside the
handlers they call (agents.py), and main.py runs it.

Settings that add waiting on the decision path, and why each is what it is here (the escalator
decides while a customer waits for a first response, on machines whose CPU the whole pipeline
shares):

- `producer_linger` 0: a decision is sent at once, not held to fill a batch; batches still form
  from whatever accumulates while a send is in flight.
- `stream_publish_on_commit` off: outputs leave when they are made, not at the next commit; the
  commit flushes the producer before it writes offsets, so at-least-once holds anyway.
- commits: the agent commits its own offsets every second (agents.py, `OffsetBook`), off the
  decision path; a shorter interval means less handled again after a crash.
- `stream_buffer_maxsize` 256 (faust: 4096): events read ahead per stream; more only delays
  backpressure and grows what a rebalance throws away. The agent hands what is read ahead to its
  worker thread in batches of up to 64 (agents.py), and a lone event at once: batching adds no
  waiting.
- fetch wait: faust's aiokafka driver asks the broker to hold an empty fetch for up to 1.5 s, but
  the broker answers as soon as one record arrives (fetch.min.bytes 1), so it bounds idle polls
  and adds no latency: left as it is (it is hard-coded in the driver). A seek waits for the fetch
  held in flight, and a request to the broker on that connection queues behind it, so the agent
  reads partition ends from the consumer's cache (agents.py, `OffsetBook.ends`).
- `stream_recovery_delay` 0: after a rebalance, recovery starts at once (failover time).
- `broker_session_timeout` (SUPPORTFLOW_ESCALATOR_SESSION_TIMEOUT_S, 10 s; faust: 60 s): how long
  a crashed replica's partitions wait before another takes them.
"""

from __future__ import annotations

from urllib.parse import urlparse

import faust

from supportflow.settings import Settings


def broker_url(settings: Settings) -> str:
    hosts = [h.strip() for h in settings.kafka_bootstrap.split(",") if h.strip()]
    return ";".join(f"kafka://{host}" for host in hosts)


def create_app(settings: Settings, *, service: str = "escalator") -> faust.App:
    """The app; its id is the consumer group (and the prefix of its changelog topics)."""
    store = settings.escalator_table_store
    if urlparse(store).scheme not in ("memory", "rocksdb"):
        raise ValueError(f"escalator_table_store must be memory:// or rocksdb://, not {store!r}")
    options: dict = {}
    # faust's data directory (RocksDB's files with rocksdb://) defaults to the working directory,
    # which is read-only in the container: the setting's, else one in the writable cache.
    datadir = settings.escalator_table_dir or settings.cache_dir / "escalator-tables"
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    options["datadir"] = str(datadir)
    if settings.kafka_security_protocol.upper() != "PLAINTEXT" or settings.kafka_sasl_mechanism:
        options["broker_credentials"] = _credentials(settings)
    session_timeout = settings.escalator_session_timeout_s
    return faust.App(
        f"{settings.topic_prefix}{service}",
        broker=broker_url(settings),
        store=store,
        processing_guarantee="at_least_once",
        autodiscover=False,
        web_enabled=False,  # health and metrics are on the ops port, as for every service
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        table_standby_replicas=settings.escalator_standby_replicas,
        producer_linger=0.0,
        producer_acks=-1,
        stream_publish_on_commit=False,
        stream_buffer_maxsize=256,
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_recovery_delay=0.0,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 10),
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        **options,
    )


def _credentials(settings: Settings):  # type: ignore[no-untyped-def]
    import ssl

    context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location or None)
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context)
