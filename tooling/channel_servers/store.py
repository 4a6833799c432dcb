"""What each server keeps: the requests it received, what Supportflow delivered through it, and the
faults it has been told to answer with.

Everything runs on the child process's one event loop, so nothing here locks. Received requests
and deliveries are appended to JSONL files in the state directory as they arrive, so a test can
read them after the process has stopped or been restarted (`received.jsonl`, `deliveries.jsonl`;
each line names its provider).
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

log = logging.getLogger("channel_servers")

DELIVERY_KINDS = ("reply", "note", "follow_up")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_ms(moment: datetime | None = None) -> str:
    """2026-12-06T03:00:00.123Z: when a server received something."""
    moment = (moment or utc_now()).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(moment: datetime) -> str:
    """2026-12-06T03:00:00Z: the providers' own timestamps."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def whole_seconds(moment: datetime | None = None) -> datetime:
    return (moment or utc_now()).replace(microsecond=0)


class IdSequence:
    """Increasing ids for one kind of record, unique across tenants of one server, so that an id
    alone names the record (`/_sim/deliveries?ticket=`, `/_sim/redeliver`)."""

    def __init__(self, start: int) -> None:
        self._next = itertools.count(start)

    def __call__(self) -> int:
        return next(self._next)


class TrafficLog:
    """One server's received requests and the deliveries among them."""

    def __init__(self, provider: str, state_dir: Path) -> None:
        self.provider = provider
        self.requests: list[dict] = []
        self.deliveries: list[dict] = []
        state_dir.mkdir(parents=True, exist_ok=True)
        self._received_path = state_dir / "received.jsonl"
        self._deliveries_path = state_dir / "deliveries.jsonl"

    def record_request(self, *, method: str, path: str, status: int, body: object, tenant: str = "") -> dict:
        entry = {"at": iso_ms(), "method": method, "path": path, "status": status, "body": body, "tenant": tenant}
        self.requests.append(entry)
        _append_jsonl(self._received_path, {"provider": self.provider} | entry)
        return entry

    def record_delivery(self, *, tenant: str, kind: str, external_id: object, ticket: object, html: str, text: str,
                        public: bool, **extra: object) -> dict:
        if kind not in DELIVERY_KINDS:
            raise ValueError(f"unknown delivery kind {kind!r}")
        item = {"kind": kind, "external_id": str(external_id), "ticket": str(ticket), "text": text, "html": html,
                "public": public, "at": iso_ms(), "tenant": tenant} | extra
        self.deliveries.append(item)
        _append_jsonl(self._deliveries_path, {"provider": self.provider} | item)
        log.info("%s: %s delivered on ticket %s (%s)", self.provider, kind, item["ticket"], item["external_id"])
        return item

    def deliveries_for(self, ticket: str | None, belongs: Callable[[dict, str], bool] | None = None) -> list[dict]:
        if not ticket:
            return list(self.deliveries)
        belongs = belongs or (lambda item, wanted: item["ticket"] == wanted)
        return [item for item in self.deliveries if belongs(item, ticket)]


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


class FaultSpecError(ValueError):
    """A /_sim/faults body that cannot be used; the message says why."""


@dataclass
class Fault:
    """What the next matching requests get instead of (or before) a normal answer."""

    status: int = 0  # answer this HTTP status instead of handling the request
    retry_after: float | None = None  # with `status`: the Retry-After header
    delay_s: float = 0.0  # wait this long first (then answer `status`, or handle the request)
    count: int | None = None  # how many requests it applies to; None: until cleared with {}
    path: str = ""  # only requests whose path contains this
    method: str = ""  # only requests with this method
    smtp_code: int = 0  # mail server: answer this SMTP code
    message: str = ""  # mail server: the text after the code
    stage: str = "data"  # mail server: "data" (after the message is sent) or "rcpt" (each recipient)


_FAULT_FIELDS = set(Fault.__dataclass_fields__)


class FaultPlan:
    """The one fault a server answers with until its count runs out or it is cleared.

    A POST to /_sim/faults replaces the plan: `{"status": 503, "count": 2}`,
    `{"status": 429, "retry_after": 1, "count": 1}`, `{"delay_s": 2.0, "count": 5}`,
    `{"smtp_code": 451, "count": 2}` (mail); `{}` clears it. Without `count` a fault lasts until
    cleared. /_sim/*, /healthz and the help center's /hc pages are never faulted.
    """

    def __init__(self, *, smtp: bool = False) -> None:
        self._smtp = smtp
        self.active: Fault | None = None

    def configure(self, spec: object) -> Fault | None:
        if not isinstance(spec, dict):
            raise FaultSpecError("a fault is a JSON object ({} clears)")
        unknown = set(spec) - _FAULT_FIELDS
        if unknown:
            raise FaultSpecError(f"unknown fault fields: {sorted(unknown)}")
        if not spec:
            self.active = None
            log.info("faults cleared")
            return None
        try:
            fault = Fault(**spec)
            fault.status = int(fault.status)
            fault.smtp_code = int(fault.smtp_code)
            fault.delay_s = float(fault.delay_s)
            fault.retry_after = None if fault.retry_after is None else float(fault.retry_after)
            fault.count = None if fault.count is None else int(fault.count)
        except (TypeError, ValueError) as exc:
            raise FaultSpecError(f"malformed fault: {exc}") from exc
        if fault.count is not None and fault.count < 1:
            raise FaultSpecError("count must be at least 1 (omit it for a fault that lasts until cleared)")
        if fault.delay_s < 0 or (fault.retry_after is not None and fault.retry_after < 0):
            raise FaultSpecError("delay_s and retry_after cannot be negative")
        if self._smtp:
            if fault.status:
                raise FaultSpecError("the mail server takes smtp_code, not status")
            if fault.smtp_code and not 400 <= fault.smtp_code <= 599:
                raise FaultSpecError("smtp_code must be a 4xx or 5xx SMTP reply code")
            if fault.stage not in ("data", "rcpt"):
                raise FaultSpecError("stage is 'data' or 'rcpt'")
            if not (fault.smtp_code or fault.delay_s):
                raise FaultSpecError("a mail fault needs smtp_code or delay_s")
        else:
            if fault.smtp_code:
                raise FaultSpecError("smtp_code is for the mail server; HTTP servers take status")
            if fault.status and not 400 <= fault.status <= 599:
                raise FaultSpecError("status must be a 4xx or 5xx HTTP status")
            if not (fault.status or fault.delay_s):
                raise FaultSpecError("a fault needs status or delay_s")
        self.active = fault
        log.info("fault set: %s", self.describe())
        return fault

    def take_http(self, method: str, path: str) -> Fault | None:
        fault = self.active
        if fault is None or (fault.path and fault.path not in path) or (
                fault.method and fault.method.upper() != method.upper()):
            return None
        return self._spend(fault)

    def take_smtp(self, stage: str) -> Fault | None:
        fault = self.active
        if fault is None or (fault.smtp_code and fault.stage != stage) or (not fault.smtp_code and stage != "data"):
            return None
        return self._spend(fault)

    def _spend(self, fault: Fault) -> Fault:
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.active = None
        return fault

    def describe(self) -> dict:
        if self.active is None:
            return {}
        defaults = Fault()
        return {k: v for k, v in asdict(self.active).items() if v != getattr(defaults, k) or k == "count"}
