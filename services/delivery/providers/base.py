"""What every channel client shares: the two failures, the result of a delivery, and the retry
loop around one provider call.

Failures, as docs/channels.md states them: 5xx, timeouts, connection errors and 429 are retried with
exponential backoff (a 429's or 503's Retry-After is honoured when it is at most
`max_retry_after_s`; a longer one ends the delivery as unavailable) up to `max_attempts` calls;
any other 4xx is permanent and carries the provider's reason.

A call that may have reached the provider before it failed (a read timeout, a dropped connection,
a 500/502/504) is *ambiguous*: posting again could post twice. Before the next attempt the loop
asks the client's `already_there` (reading the thread back) and stops if the post is there.
Connection refusals, connect timeouts, 429 and 503 never reached the provider's write path.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, TypeVar

import httpx
import tenacity

from services.delivery import metrics
from services.delivery.handlers import DeliveryPlan

log = logging.getLogger(__name__)

T = TypeVar("T")


class PermanentDeliveryError(Exception):
    """The provider refused for good (a 4xx other than 429): retrying cannot help."""

    def __init__(self, provider: str, status: int, reason: str) -> None:
        super().__init__(f"{provider} {status}: {reason}")
        self.provider = provider
        self.status = status
        self.reason = reason
        self.attempts = 1  # set by the caller to the calls it took

    @property
    def reason_label(self) -> str:
        if self.status == 404:
            return "not_found"
        if self.status in (401, 403, 530, 534, 535):  # HTTP, and SMTP's authentication refusals
            return "unauthorized"
        return "rejected"


class ProviderUnavailable(Exception):
    """Transient failures outlasted the retries (or the lane's circuit is open). `retry_after`:
    how long the provider's last answer asked to wait (Retry-After), when it said."""

    def __init__(self, provider: str, detail: str, attempts: int, *, retry_after: float | None = None) -> None:
        super().__init__(f"{provider} unavailable after {attempts} attempt(s): {detail}")
        self.provider = provider
        self.detail = detail
        self.attempts = attempts
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The service is stopping: a delivery waiting to retry gives up, unrecorded, so that its
    batch is not committed and the next consumer delivers it (reconciling first)."""


def stoppable_sleep(stopping: threading.Event) -> Callable[[float], None]:
    """A backoff sleep that ends the delivery when the service stops."""

    def pause(seconds: float) -> None:
        if stopping.wait(seconds):
            raise ShuttingDown("stopping: the delivery is left for the next consumer")

    return pause


@dataclass(frozen=True)
class Posted:
    external_id: str  # the provider's id of what was created (comment, part, reply; Message-ID)
    attempts: int  # calls it took to post it (0: nothing was posted, it was found there)
    already_delivered: bool = False
    warning: str = ""  # a ticket update after the post that failed (the message itself stands)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_retry_after_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0


class ChannelClient(Protocol):
    provider: str

    def deliver(self, plan: DeliveryPlan, *, reconcile: bool) -> Posted:
        """Post the plan's message (after looking for it on the thread when `reconcile`) and set
        the ticket's fields. Raises PermanentDeliveryError or ProviderUnavailable."""

    def close(self) -> None: ...


class Retryable(Exception):
    """A failure worth another attempt (raised inside an attempt, never out of a caller)."""

    def __init__(self, detail: str, retry_after: float | None = None, *, ambiguous: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.ambiguous = ambiguous  # the call may have been applied


@dataclass
class Found(Generic[T]):
    """What `already_there` returned: the call is not made again."""

    value: T


def retry_after_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date; None when absent or unreadable."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def provider_reason(response: httpx.Response) -> str:
    """The provider's own words for a refusal, from the error shapes of Zendesk
    ({"error", "description", "details"}), Intercom ({"errors": [{"code", "message"}]}) and
    Freshdesk ({"description", "errors": [{"field", "message", "code"}]}, {"code", "message"})."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return text[:300] or response.reason_phrase or "no reason given"
    parts: list[str] = []
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            parts += [str(error.get(key)) for key in ("title", "message") if error.get(key)]
        elif error:
            parts.append(str(error))
        for key in ("code", "description", "message"):
            if body.get(key) and str(body[key]) not in parts:
                parts.append(str(body[key]))
        errors = body.get("errors")
        if isinstance(errors, list):
            for item in errors[:3]:
                if isinstance(item, dict):
                    text = " ".join(str(item[key]) for key in ("field", "code", "message") if item.get(key))
                    parts.append(text)
        details = body.get("details")
        if isinstance(details, dict):
            for name, problems in list(details.items())[:3]:
                described = problems if isinstance(problems, list) else [problems]
                parts.append(f"{name}: " + "; ".join(
                    str(p.get("description", p)) if isinstance(p, dict) else str(p) for p in described))
    reason = "; ".join(part for part in parts if part)
    return reason[:500] or response.reason_phrase or "no reason given"


def check(provider: str, what: str, response: httpx.Response, policy: RetryPolicy) -> httpx.Response:
    """The response if it is a success; otherwise raises what its status means."""
    status = response.status_code
    if status < 400:
        return response
    if status == 429 or status >= 500:
        wait = retry_after_seconds(response)
        if wait is not None and wait > policy.max_retry_after_s:
            raise ProviderUnavailable(provider, f"{what}: {status}, Retry-After {wait:.0f}s is longer than the "
                                      f"{policy.max_retry_after_s:.0f}s allowed", 0, retry_after=wait)
        raise Retryable(f"{what}: {status} {provider_reason(response)}", wait, ambiguous=status in (500, 502, 504))
    raise PermanentDeliveryError(provider, status, f"{what}: {provider_reason(response)}")


class ProviderCaller:
    """Makes provider calls with the retry policy, counting the attempts each took."""

    def __init__(self, provider: str, policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.provider = provider
        self.policy = policy
        self._sleep = sleep

    def check(self, what: str, response: httpx.Response) -> httpx.Response:
        return check(self.provider, what, response, self.policy)

    def call(
        self,
        what: str,
        request: Callable[[], httpx.Response],
        *,
        already_there: Callable[[], T | None] | None = None,
    ) -> tuple[httpx.Response | Found[T], int]:
        """(the success response, or Found(what `already_there` found before a retry), attempts).
        `already_there` is asked before each attempt that follows an ambiguous failure."""
        ambiguous = False

        def attempt() -> httpx.Response | Found[T]:
            nonlocal ambiguous
            if ambiguous and already_there is not None:
                try:
                    found = already_there()  # a transient failure costs one more attempt
                except httpx.TransportError as exc:
                    raise Retryable(f"reading the thread back: {type(exc).__name__}: {exc}") from exc
                if found is not None:
                    return Found(found)
            started = time.monotonic()
            try:
                response = self.check(what, request())
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self._observe("retryable", started)
                raise Retryable(f"{what}: {type(exc).__name__}: {exc}") from exc
            except httpx.TransportError as exc:  # read/write timeouts, dropped connections
                self._observe("retryable", started)
                ambiguous = True
                raise Retryable(f"{what}: {type(exc).__name__}: {exc}", ambiguous=True) from exc
            except Retryable as exc:
                self._observe("retryable", started)
                ambiguous = ambiguous or exc.ambiguous
                raise
            except (PermanentDeliveryError, ProviderUnavailable):
                self._observe("refused", started)
                raise
            self._observe("ok", started)
            return response

        return self.run(what, attempt)

    def read(self, what: str, fetch: Callable[[], T]) -> T:
        """A read (the thread, the ticket) with the same retries; `fetch` uses `check`."""

        def attempt() -> T:
            try:
                return fetch()
            except httpx.TransportError as exc:
                raise Retryable(f"{what}: {type(exc).__name__}: {exc}") from exc

        value, _ = self.run(what, attempt)
        return value

    def run(self, what: str, attempt: Callable[[], T]) -> tuple[T, int]:
        attempts = 0

        def counted() -> T:
            nonlocal attempts
            attempts += 1
            return attempt()

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.policy.max_attempts)),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(Retryable),
            before_sleep=self._log_retry,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(counted), attempts
        except Retryable as exc:
            raise ProviderUnavailable(self.provider, exc.detail, attempts, retry_after=exc.retry_after) from exc
        except ProviderUnavailable as exc:
            raise ProviderUnavailable(self.provider, exc.detail, attempts, retry_after=exc.retry_after) from exc
        except PermanentDeliveryError as exc:
            exc.attempts = attempts
            raise

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return exc.retry_after
        policy = self.policy
        backoff = min(policy.backoff_max_s, policy.backoff_initial_s * 2 ** (state.attempt_number - 1))
        return backoff * random.uniform(0.5, 1.0)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("provider call failed, retrying", extra={"fields": {
            "provider": self.provider, "attempt": state.attempt_number, "error": str(exc)[:300]}})

    def _observe(self, outcome: str, started: float) -> None:
        metrics.PROVIDER_REQUESTS.labels(self.provider, outcome).observe(time.monotonic() - started)

    def update(self, what: str, request: Callable[[], httpx.Response]) -> str:
        """A call after the message is posted (a status, an assignment), retried like any other.
        If it fails for good the message still stands (posting it again would not help): the
        failure is returned, to be recorded with the delivery, and logged."""
        try:
            self.call(what, request)
        except (PermanentDeliveryError, ProviderUnavailable) as exc:
            log.warning("ticket update after the post failed", extra={"fields": {"provider": self.provider, "error": str(exc)[:500]}})
            return str(exc)
        return ""


def json_or_empty(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return {}


class HelpdeskClient:
    """The delivery every helpdesk follows: (reconcile: look for the message on the thread) ->
    post it (looking again before a retry that follows an ambiguous failure) -> set the ticket's
    fields. Subclasses say how each step is spelled for their API."""

    provider = "helpdesk"

    def __init__(self, http: httpx.Client, policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._http = http
        self._caller = ProviderCaller(self.provider, policy, sleep=sleep)

    def deliver(self, plan: DeliveryPlan, *, reconcile: bool) -> Posted:
        if reconcile:
            existing = self._caller.read("read the thread", lambda: self.find_posted(plan))
            if existing is not None:
                log.info("found on the thread: not posted again", extra={"fields": {
                    "provider": self.provider, "external_id": existing}})
                return Posted(existing, 0, already_delivered=True, warning=self.update_ticket(plan))
        result, attempts = self._caller.call("post", lambda: self.post(plan), already_there=lambda: self.find_posted(plan))
        if isinstance(result, Found):
            return Posted(str(result.value), attempts, already_delivered=True, warning=self.update_ticket(plan))
        return Posted(self.created_id(result), attempts, warning=self.update_ticket(plan))

    def close(self) -> None:
        self._http.close()

    # What a subclass spells out.
    def post(self, plan: DeliveryPlan) -> httpx.Response:
        raise NotImplementedError

    def created_id(self, response: httpx.Response) -> str:
        raise NotImplementedError

    def find_posted(self, plan: DeliveryPlan) -> str | None:
        """The id of a part of the thread that is this plan's message, if any (uses `check`)."""
        raise NotImplementedError

    def update_ticket(self, plan: DeliveryPlan) -> str:
        """Set what the plan says beyond the message; returns a failure to record, or ""."""
        return ""
