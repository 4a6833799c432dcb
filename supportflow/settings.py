"""The one place that reads the environment.

Every knob is an environment variable named SUPPORTFLOW_<FIELD> (upper case), read and validated
by pydantic-settings when a process starts: one SettingsError names every variable that is
malformed, not just the first. Nothing else calls `os.environ`.

`Settings` holds what every service process reads (Kafka, topics, the ops and gRPC ports,
tenants). Each service declares its own knobs in a subclass beside it (`services/<name>/settings.py`),
and its process reads that class alone: a service is configured, validated and documented by what
it reads, and a bad variable of another service never stops it. The parts several services share
are here, each for the platform module that reads it: `ChannelSettings` (channels.py),
`InvestigationSettings` and `EvidenceSettings` (investigation.py and the peers' addresses); a
library's are beside it (`integrations/settings.py`, `encoders/settings.py`). Services pass plain
values on to constructors.
"""

from __future__ import annotations

import os
import typing
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Mapping, Self

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from supportflow.channels import ChannelConfigError, ChannelsConfig

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

    # Each service process: its gRPC port (0 = none), its ops HTTP port (/metrics, /healthz,
    # /readyz), and the deadline of a gRPC call it makes.
    grpc_port: int = 0
    ops_port: int = 9000
    grpc_deadline_s: float = 2.0
    # Each tenant's own data (help center, policies, lexicons, playbooks): <dir>/<tenant>/. Unset:
    # the checkout's tenants/ folder (`tenant_data_dir`).
    tenants_dir: Path | None = None
    default_tenant: str = "rho-bank"

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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """Settings from `environ` (the process's environment by default), `overrides` winning;
        raises SettingsError naming every malformed variable."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**overrides)
        finally:
            _ENVIRON.reset(token)

    def replace(self, **changes: object) -> Self:
        """A copy with `changes`, validated like the environment's values."""
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(unknown)}")
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

    @property
    def tenant_data_dir(self) -> Path:
        """Where each tenant's own data lives (`<dir>/<tenant>/`): SUPPORTFLOW_TENANTS_DIR, or the
        checkout's tenants/ folder."""
        return self.tenants_dir or CHECKOUT_TENANTS_DIR


class ChannelSettings(Settings):
    """For the services that speak to the tenants' channels (the gateway takes tickets in, delivery
    posts back)."""

    # Per-tenant channels (helpdesks, mailboxes, their credentials): supportflow/channels.py.
    # Unset: no helpdesk or mailbox is connected (the signed JSON API still works).
    channels_path: Path | None = None

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


class InvestigationSettings(Settings):
    """For the investigator and its callers: an investigation answers within this deadline, or
    with what it has; a caller waits that long plus a margin (supportflow/investigation.py)."""

    investigation_deadline_s: float = 1.5


class EvidenceSettings(InvestigationSettings):
    """For the services that gather evidence from the retriever and the investigator over gRPC
    (the drafter, the escalator): their addresses (host:port)."""

    retriever_addr: str = "127.0.0.1:50062"
    investigator_addr: str = "127.0.0.1:50066"


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
