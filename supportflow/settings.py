"""The one place that reads the environment.

Every knob is an environment variable named SUPPORTFLOW_<FIELD> (upper case), read and validated
by pydantic-settings when a process starts: one SettingsError names every variable that is
malformed, not just the first. Services receive a `Settings` object and pass plain values on to
constructors; nothing else calls `os.environ`.
"""

from __future__ import annotations

import os
import typing
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Mapping

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from supportflow.channels import ChannelConfigError, ChannelsConfig
from supportflow.systems import SystemsConfig, load_systems

ENV_PREFIX = "SUPPORTFLOW_"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "supportflow"


# The tenants shipped with Supportflow, beside this package in a checkout (the image copies them
# and sets SUPPORTFLOW_TENANTS_DIR).
CHECKOUT_TENANTS_DIR = Path(__file__).resolve().parents[1] / "tenants"


class SettingsError(ValueError):
    """Settings are missing or malformed; raised at start-up, never later, naming every bad one."""


# The environment `Settings.from_env` reads in this context: a mapping it was given, or None for
# the process's own.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("supportflow_settings_environ", default=None)


class _EnvironmentSource(EnvSettingsSource):
    """The SUPPORTFLOW_* variables of the environment `from_env` was handed (os.environ unless a
    mapping was given), parsed the pydantic-settings way."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return super()._load_env_vars()
        return {name.lower(): value for name, value in environ.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True, extra="forbid",
                                      validate_by_name=True)

    # Where downloads, builds, trained models and local server state live (never in git).
    cache_dir: Path = Field(default_factory=_default_cache_dir)

    # Kafka. The defaults point at the broker that `supportflow dev up` starts.
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_location: str = ""
    topic_prefix: str = ""
    topic_partitions: int = 3
    topic_replication: int = 1
    # How long a committing consumer group remembers the event ids it handled, to skip a sender's
    # retry or a redelivery (ConsumerLoop; kept in the group's `<group>.handled-ids` topic). A day
    # covers helpdesks' webhook retries and a mail server's retries of a mail it saw no reply to
    # within the day; memory grows with the events a group handles in one TTL (~170 bytes each).
    dedupe_ttl_s: float = Field(24 * 3600.0, gt=0)

    # Weaviate. The defaults point at the server that `supportflow dev up` starts.
    weaviate_http_host: str = "127.0.0.1"
    weaviate_http_port: int = 18080
    weaviate_grpc_port: int = 18051
    weaviate_api_key: str = ""

    # Local dev stack (only used by `supportflow dev ...` and the test fixtures).
    kafka_controller_port: int = 19093
    weaviate_gossip_port: int = 17946
    weaviate_data_port: int = 17947
    weaviate_raft_port: int = 18300
    weaviate_raft_internal_rpc_port: int = 18301

    # Service addresses (host:port) for gRPC calls between services.
    retriever_addr: str = "127.0.0.1:50062"
    drafter_addr: str = "127.0.0.1:50063"
    learner_addr: str = "127.0.0.1:50065"
    investigator_addr: str = "127.0.0.1:50066"
    grpc_deadline_s: float = 2.0

    # Each service process: its gRPC port (0 = none), its ops HTTP port (/metrics, /healthz, /readyz).
    grpc_port: int = 0
    ops_port: int = 9000
    gateway_http_port: int = 8088
    # HMAC-SHA256 secret for webhook signatures (X-Supportflow-Signature); empty disables the check.
    gateway_webhook_secret: str = ""
    gateway_max_body_bytes: int = 256 * 1024
    # A helpdesk's webhook carries the ticket's description and its latest comment, as HTML and
    # escaped twice over: a long ticket is cut and flagged at intake, not refused (the helpdesk
    # would not send it again, and the customer would never hear back).
    gateway_max_webhook_bytes: int = 4 * 1024 * 1024
    # Inbound mail (SMTP) for the tenants' support mailboxes; 0: no SMTP listener.
    gateway_smtp_port: int = 0
    gateway_smtp_host: str = "0.0.0.0"
    # A mail larger than this is refused at SMTP time (552); attachments are counted, never kept.
    gateway_max_mail_bytes: int = 10 * 1024 * 1024
    # Per-tenant channels (helpdesks, mailboxes, their credentials): supportflow/channels.py.
    # Unset: no helpdesk or mailbox is connected (the signed JSON API still works).
    channels_path: Path | None = None

    # Investigation: the per-tenant systems of record (account system, transactions, product events,
    # changes, incidents: base URLs and credentials by ${NAME} reference) and the playbooks folder
    # root (tenants/<tenant>/playbooks/*.yaml). Unset: no tenant has connected systems and every
    # investigation is empty. The whole investigation answers within the deadline, or with what it has.
    # tenants_dir unset: the checkout's tenants/ folder (`tenant_data_dir`).
    systems_path: Path | None = None
    tenants_dir: Path | None = None
    investigation_deadline_s: float = 1.5

    # Delivery: where the ledger of what was posted lives (SQLAlchemy URL; unset: a SQLite file
    # under cache_dir), how long one provider call may take and how many times it is tried.
    delivery_ledger_url: str = ""
    delivery_timeout_s: float = 10.0
    delivery_max_attempts: int = 5
    # The longest a provider's Retry-After is honoured before the attempt counts as failed.
    delivery_max_retry_after_s: float = 30.0
    delivery_workers: int = 8

    # Workspace (the agents' web application): its HTTP port, its database (SQLAlchemy URL; unset:
    # a SQLite file under cache_dir), the key that signs session cookies (unset: a random one per
    # start, which logs everyone out at each restart), the first admin's login (created at start
    # when the database has no user) and the first API token (Authorization: Bearer).
    workspace_http_port: int = 8090
    workspace_db_url: str = ""
    workspace_session_secret: str = ""
    workspace_admin_user: str = "admin"
    workspace_admin_password: str = ""
    workspace_api_token: str = ""
    workspace_rollback_owners: str = ""  # "archetype=username,...": who may pull each archetype back to draft-for-review
    workspace_redraft_deadline_s: float = 10.0  # deadline of the workspace's Drafter.Draft call (an agent's new draft)

    # Models and data.
    intent_model_dir: Path | None = None
    # Tenants' own intent models: <dir>/<tenant>/ from `supportflow classifier train --tenant`; a
    # tenant without one is classified with intent_model_dir's. Unset: no tenant has its own.
    intent_models_dir: Path | None = None
    embedding_model: str = "minilm"  # search, similar cases and the drafter (encoders/embedding.py)
    intent_encoder: str = "minilm+layer3"  # what new intent models train on; a model keeps its own
    # The encoder new intent models consult for the tickets the first one leaves them unsure of;
    # empty: none (services/classifier/intent_model.py).
    intent_second_encoder: str = "bge-small"
    # bge-small-en-v1.5's two files; unset: fetched into <cache_dir>/models with Maven on first use.
    bge_model_dir: Path | None = None
    # The SDK's own variable, ANTHROPIC_API_KEY, is honoured too, so a key set the usual way works.
    anthropic_api_key: str = Field("", validation_alias=AliasChoices(ENV_PREFIX + "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"))
    anthropic_base_url: str = ""
    anthropic_model: str = ""
    anthropic_timeout_s: float = 20.0
    anthropic_max_tokens: int = 1024
    default_tenant: str = "rho-bank"
    # With an API key, low-confidence tickets go to Claude for extraction, at most this many a
    # minute (0: never), each call bounded by the timeout (the triage path must not stall).
    classifier_claude_assist_per_minute: int = 30
    classifier_claude_timeout_s: float = 4.0

    # Policy and configuration files. Unset: the file shipped beside the service.
    routing_policy_path: Path | None = None  # classifier; re-read when it changes
    escalation_config_path: Path | None = None
    action_limits_path: Path | None = None
    learner_config_path: Path | None = None
    # Learner snapshots (services/learner/snapshots.py): unset, every start replays the outcome
    # topics from the beginning.
    learner_snapshot_dir: Path | None = None
    learner_snapshot_interval_s: float = 300.0
    # How long Kafka waits for a silent learner replica before handing its intake partitions to
    # another (the learner's panel is served meanwhile; only new input waits).
    learner_session_timeout_s: float = 10.0
    # The escalator's faust tables (services/escalator/agents.py): "memory://" keeps them in
    # process memory, recovered from their changelogs at each start (tests, small deployments);
    # "rocksdb://" keeps them on disk under escalator_table_dir (default: <cache_dir>/escalator-tables;
    # each replica needs its own), so a restart reads only what its disk lacks. Standby replicas keep a warm copy of other replicas' tables for fast failover.
    escalator_table_store: str = "memory://"
    escalator_table_dir: Path | None = None
    escalator_standby_replicas: int = 0
    # How long Kafka waits for a silent escalator replica before handing its partitions to another
    # (a crashed one: this is most of the failover time).
    escalator_session_timeout_s: float = 10.0
    # Peer lookups (similar cases, articles, investigations) an escalator replica runs at once,
    # started ahead for the events of a batch while it decides them in order.
    escalator_lookup_concurrency: int = Field(default=8, ge=1)
    drafter_templates_path: Path | None = None
    drafter_evidence_k: int = 4  # distinct articles the drafter asks the retriever for
    # Tickets handled at once per process: the drafter mostly waits on the retriever; the
    # classifier's model inference releases the GIL.
    drafter_workers: int = 4
    classifier_workers: int = 2
    # Score quotable sentences with the sentence encoder as well as lexically. Better picks for
    # paraphrased questions, but each uncached sentence costs ~1 ms of CPU per word piece: about
    # 0.5 s per draft on a 2-core machine, which caps the offline pipeline near 5 tickets/s.
    drafter_sentence_embeddings: bool = False
    # Actions (refunds, resets, plan changes) are recorded but not executed unless this is false.
    actions_dry_run: bool = True
    # The CRM: a JSON export or an http(s) base URL (GET {url}/customers/{id}). Unset: the demo's
    # sample customers.
    crm_location: str = ""
    crm_timeout_s: float = 0.5

    log_level: str = "INFO"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _settings_error(exc) from None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment; no .env or secrets files (Kubernetes passes
        Secrets as variables)."""
        return init_settings, _EnvironmentSource(settings_cls)

    @field_validator("*", mode="before")
    @classmethod
    def _paths_expand_and_empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """A path variable set to "" means unset; `~` expands to the home folder."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and (annotation is Path or Path in typing.get_args(annotation)):
            if not value and type(None) in typing.get_args(annotation):
                return None
            return Path(value).expanduser()
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Settings from `environ` (the process's environment by default), `overrides` winning;
        raises SettingsError naming every malformed variable."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**overrides)
        finally:
            _ENVIRON.reset(token)

    def replace(self, **changes: object) -> "Settings":
        """A copy with `changes`, validated like the environment's values."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"Settings has no field {', '.join(unknown)}")
        token = _ENVIRON.set({})  # the copy is these settings and the changes, not the environment
        try:
            return type(self)(**(self.model_dump() | changes))
        finally:
            _ENVIRON.reset(token)

    def to_env(self) -> dict[str, str]:
        """These settings as SUPPORTFLOW_* variables, to hand to a child process."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                env[ENV_PREFIX + name.upper()] = str(value)
        return env

    def channels(self, environ: dict[str, str] | None = None) -> ChannelsConfig:
        """The per-tenant channels file, its ${NAME} references read from the environment; an empty
        configuration when no file is set. Raises ChannelConfigError listing every problem."""
        if self.channels_path is None:
            return ChannelsConfig()
        try:
            text = self.channels_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ChannelConfigError(f"{ENV_PREFIX}CHANNELS_PATH: cannot read {self.channels_path}: {exc}") from exc
        return ChannelsConfig.from_yaml(text, os.environ if environ is None else environ, str(self.channels_path))

    def systems(self, environ: Mapping[str, str] | None = None) -> SystemsConfig:
        """The per-tenant systems file, its ${NAME} references (credentials) read from the
        environment; no tenant has systems when no file is set. Raises SystemsConfigError."""
        return load_systems(self.systems_path, os.environ if environ is None else environ)

    @property
    def tenant_data_dir(self) -> Path:
        """Where each tenant's own data lives (`<dir>/<tenant>/`): SUPPORTFLOW_TENANTS_DIR, or the
        checkout's tenants/ folder."""
        return self.tenants_dir or CHECKOUT_TENANTS_DIR

    @property
    def workspace_database_url(self) -> str:
        return self.workspace_db_url or f"sqlite:///{self.cache_dir / 'state' / 'workspace.sqlite'}"

    @property
    def ledger_url(self) -> str:
        return self.delivery_ledger_url or f"sqlite:///{self.cache_dir / 'state' / 'delivery-ledger.sqlite'}"

    @property
    def weaviate_http_url(self) -> str:
        return f"http://{self.weaviate_http_host}:{self.weaviate_http_port}"


def _settings_error(exc: ValidationError) -> SettingsError:
    """One error naming every bad variable, its value and what is wrong with it."""
    problems = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        variable = name.upper() if name.upper().startswith(ENV_PREFIX) or name.isupper() else ENV_PREFIX + name.upper()
        shown = "" if error["type"] == "missing" else f"={error['input']!r}"
        problems.append(f"{variable}{shown}: {error['msg']}")
    if len(problems) == 1:
        return SettingsError(problems[0])
    return SettingsError(f"{len(problems)} settings are invalid:\n" + "\n".join(f"  {p}" for p in problems))
