"""The delivery ledger (SQLite in tmp_path) and what the deliverer does with each of its states:
never seen -> post; done -> record again, post nothing; started or failed -> read the thread back
first -- and the two passes: a first attempt hands a transient failure to the retry topic, the
retry reads the thread back before posting and dead-letters what runs out of attempts. Providers
are httpx.MockTransport scripts."""

from __future__ import annotations

import threading

import httpx
import pytest

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.eventbus import Emit, InvalidEvent, TransientError, derived_event_id
from supportflow.topics import Topic

from services.delivery.deliverer import NO_NOTES_ADDRESS, ChannelClients, Deliverer, RetryLater
from services.delivery.lanes import ProviderLanes
from services.delivery.ledger import DONE, FAILED, STARTED, Claim, DeliveryLedger
from services.delivery.providers.base import ProviderUnavailable, RetryPolicy, stoppable_sleep
from services.delivery.providers.smtp_mail import SmtpMailer
from services.delivery.providers.zendesk import ZendeskClient
from tests.unit.test_delivery_handlers import CHANNELS, TENANT, decided, plan_for

CLAIM = Claim("e1", "zd-1001", TENANT, "zendesk", "reply", "1001")


@pytest.fixture
def ledger(tmp_path) -> DeliveryLedger:
    ledger = DeliveryLedger(f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite'}")
    yield ledger
    ledger.close()


def test_a_claim_marks_started_and_returns_what_was_there(ledger: DeliveryLedger) -> None:
    assert ledger.claim(CLAIM) is None
    entry = ledger.entry("e1")
    assert entry.state == STARTED and entry.runs == 1 and entry.attempts == 0
    again = ledger.claim(CLAIM)  # the process died before finishing: the next run sees it started
    assert again.state == STARTED and ledger.entry("e1").runs == 2


def test_done_is_final(ledger: DeliveryLedger) -> None:
    ledger.claim(CLAIM)
    ledger.finish("e1", status="delivered", external_id="555", attempts=3, delivered_at=1_700_000_100.0)
    entry = ledger.entry("e1")
    assert (entry.state, entry.status, entry.external_id, entry.attempts, entry.delivered_at) == (
        DONE, "delivered", "555", 3, 1_700_000_100.0)
    assert ledger.claim(CLAIM).done
    assert ledger.entry("e1").state == DONE and ledger.entry("e1").runs == 1  # a done claim changes nothing


def test_a_failure_can_be_delivered_again_and_attempts_add_up(ledger: DeliveryLedger) -> None:
    ledger.claim(CLAIM)
    ledger.fail("e1", error="zendesk 503 ...", attempts=5)
    assert ledger.entry("e1").state == FAILED
    assert ledger.claim(CLAIM).state == FAILED  # a replayed dead letter: reconcile, then post
    ledger.finish("e1", status="already_delivered", external_id="9", attempts=0, delivered_at=1.0)
    assert ledger.entry("e1").attempts == 5 and ledger.counts() == {DONE: 1}


def test_a_ledger_survives_a_restart(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    first = DeliveryLedger(url)
    first.claim(CLAIM)
    first.close()
    second = DeliveryLedger(url)
    assert second.entry("e1").state == STARTED
    second.close()


def test_concurrent_claims_of_different_decisions(ledger: DeliveryLedger) -> None:
    def work(index: int) -> None:
        claim = Claim(f"e{index}", f"t{index}", TENANT, "zendesk", "reply", str(index))
        ledger.claim(claim)
        ledger.finish(claim.decision_event_id, status="delivered", external_id=str(index), attempts=1, delivered_at=1.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.counts() == {DONE: 40}


# --- the deliverer over the ledger -------------------------------------------------------------


class ZendeskScript:
    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)


NOW = 1_700_000_042.0


def deliverer(ledger: DeliveryLedger, script: ZendeskScript, published: list[Emit],
              lanes: ProviderLanes | None = None, *, max_attempts: int = 3, retry_later: RetryLater | None = None,
              waited: list[float] | None = None) -> Deliverer:
    def make(tenant: str, provider: str):
        channels = CHANNELS.tenants[tenant]
        if provider == "email":
            return SmtpMailer(channels.email, RetryPolicy(max_attempts=2), 1.0, sleep=lambda _: None)
        return ZendeskClient(channels.zendesk, RetryPolicy(max_attempts=max_attempts, max_retry_after_s=1.0), 1.0,
                             transport=httpx.MockTransport(script), sleep=lambda _: None)

    return Deliverer(CHANNELS, ledger, ChannelClients(make), lanes or ProviderLanes(4, 30.0), published.append,
                     retry_later=retry_later, wait=(waited if waited is not None else []).append, clock=lambda: NOW)


POSTED = httpx.Response(200, json={"ticket": {"id": 1001}, "audit": {"events": [{"id": 555, "type": "Comment"}]}})


def test_a_new_decision_is_posted_recorded_and_done(ledger: DeliveryLedger) -> None:
    script = ZendeskScript(POSTED)
    event = decided()
    (emit,) = deliverer(ledger, script, []).on_decided(event)
    record = emit.event
    assert emit.topic is Topic.TICKETS_DELIVERED and emit.key == "zd-1001"
    assert record.status == ev.DELIVERY_STATUS_DELIVERED and record.external_id == "555" and record.attempts == 1
    assert record.kind == ev.DELIVERY_KIND_REPLY and record.provider == "zendesk" and record.external_ticket_id == "1001"
    assert record.decision_event_id == event.meta.event_id and record.latency_s == pytest.approx(42.0)
    assert record.received_at.seconds == 1_700_000_000 and "Sources:" in record.text and len(record.citations) == 3
    assert ledger.entry(event.meta.event_id).state == DONE
    assert [r.method for r in script.requests] == ["PUT"]


def test_a_done_decision_is_recorded_again_and_not_posted(ledger: DeliveryLedger) -> None:
    event = decided()
    first = deliverer(ledger, ZendeskScript(POSTED), []).on_decided(event)
    script = ZendeskScript()
    (again,) = deliverer(ledger, script, []).on_decided(event)
    assert script.requests == []
    assert (again.event.status, again.event.external_id) == (first[0].event.status, first[0].event.external_id)


def test_a_started_decision_found_on_the_thread_is_already_delivered(ledger: DeliveryLedger) -> None:
    event = decided()
    plan = plan_for(event)
    ledger.claim(Claim(event.meta.event_id, "zd-1001", TENANT, "zendesk", "reply", "1001"))  # then the process died
    script = ZendeskScript(httpx.Response(200, json={"comments": [
        {"id": 11, "public": True, "body": "My card has not arrived"},
        {"id": 555, "public": True, "body": plan.message.text.replace("\n\n", "\n")},
    ]}))
    (emit,) = deliverer(ledger, script, []).on_decided(event)
    assert emit.event.status == ev.DELIVERY_STATUS_ALREADY_DELIVERED and emit.event.external_id == "555"
    assert [r.method for r in script.requests] == ["GET"]
    assert ledger.entry(event.meta.event_id).status == "already_delivered"


def test_a_started_decision_not_on_the_thread_is_posted(ledger: DeliveryLedger) -> None:
    event = decided()
    ledger.claim(Claim(event.meta.event_id, "zd-1001", TENANT, "zendesk", "reply", "1001"))
    # A private note with the same words does not count for a public reply.
    script = ZendeskScript(httpx.Response(200, json={"comments": [
        {"id": 12, "public": False, "html_body": plan_for(event).message.html}]}), POSTED)
    (emit,) = deliverer(ledger, script, []).on_decided(event)
    assert emit.event.status == ev.DELIVERY_STATUS_DELIVERED and [r.method for r in script.requests] == ["GET", "PUT"]


def test_a_refusal_is_recorded_failed_and_dead_lettered(ledger: DeliveryLedger) -> None:
    event = decided()
    published: list[Emit] = []
    script = ZendeskScript(httpx.Response(404, json={"error": "RecordNotFound", "description": "Not found"}))
    with pytest.raises(InvalidEvent) as raised:
        deliverer(ledger, script, published).on_decided(event)
    assert str(raised.value).startswith("not_found: zendesk 404") and "RecordNotFound" in str(raised.value)
    (emit,) = published
    assert emit.event.status == ev.DELIVERY_STATUS_FAILED and "RecordNotFound" in emit.event.error
    assert emit.event.attempts == 1
    assert emit.event.meta.event_id == derived_event_id(event.meta.event_id, Topic.TICKETS_DELIVERED, 0)
    assert ledger.entry(event.meta.event_id).state == FAILED


def test_an_unavailable_provider_opens_its_lane(ledger: DeliveryLedger) -> None:
    lanes = ProviderLanes(4, 30.0)
    published: list[Emit] = []
    script = ZendeskScript(*[httpx.Response(503)] * 3)
    with pytest.raises(InvalidEvent, match="^provider_unavailable: zendesk unavailable after 3 attempt"):
        deliverer(ledger, script, published, lanes).on_decided(decided())
    assert lanes.is_open((TENANT, "zendesk")) and not lanes.is_open(("other", "zendesk"))
    second = decided()
    second.meta.event_id = "f" * 32
    with pytest.raises(InvalidEvent, match="not called for"):
        deliverer(ledger, script, published, lanes).on_decided(second)
    assert len(script.requests) == 3  # the second one never reached the provider
    assert [e.event.status for e in published] == [ev.DELIVERY_STATUS_FAILED] * 2


def test_a_closed_lane_after_the_cool_down() -> None:
    now = [0.0]
    lanes = ProviderLanes(1, 30.0, clock=lambda: now[0])

    def fail() -> None:
        raise ProviderUnavailable("zendesk", "503", 5)

    with pytest.raises(ProviderUnavailable):
        lanes.run(("t", "zendesk"), fail)
    assert lanes.is_open(("t", "zendesk"))
    now[0] = 31.0
    assert lanes.run(("t", "zendesk"), lambda: "ok") == "ok" and not lanes.is_open(("t", "zendesk"))


def test_an_api_ticket_is_recorded_failed_without_a_dead_letter(ledger: DeliveryLedger) -> None:
    published: list[Emit] = []
    (emit,) = deliverer(ledger, ZendeskScript(), published).on_decided(decided(provider="api"))
    assert emit.event.status == ev.DELIVERY_STATUS_FAILED and emit.event.error.startswith("no channel")
    assert published == [] and ledger.counts() == {}


def test_a_missing_channel_is_recorded_and_dead_lettered(ledger: DeliveryLedger) -> None:
    event = decided()
    event.ticket.tenant_id = "other-bank"
    published: list[Emit] = []
    with pytest.raises(InvalidEvent, match="^no_channel"):
        deliverer(ledger, ZendeskScript(), published).on_decided(event)
    assert published[0].event.status == ev.DELIVERY_STATUS_FAILED


def test_an_email_note_without_notes_address_is_delivered_to_the_topic_only(ledger: DeliveryLedger) -> None:
    event = decided(ev.DECISION_REVIEW, provider="email", requester_email="ana@example.com", message_id="<m@x>")
    (emit,) = deliverer(ledger, ZendeskScript(), []).on_decided(event)
    assert emit.event.status == ev.DELIVERY_STATUS_DELIVERED and emit.event.provider == "email"
    assert emit.event.external_id == "" and emit.event.error == NO_NOTES_ADDRESS
    assert "Draft for review" in emit.event.text and ledger.entry(event.meta.event_id).state == DONE


def test_a_delivery_waiting_to_retry_at_shutdown_is_left_uncommitted(ledger: DeliveryLedger) -> None:
    stopping = threading.Event()
    stopping.set()
    script = ZendeskScript(httpx.Response(503))

    def make(tenant: str, provider: str):
        return ZendeskClient(CHANNELS.tenants[tenant].zendesk, RetryPolicy(max_attempts=3), 1.0,
                             transport=httpx.MockTransport(script), sleep=stoppable_sleep(stopping))

    event = decided()
    lanes = ProviderLanes(4, 30.0)
    with pytest.raises(TransientError, match="stopping"):
        Deliverer(CHANNELS, ledger, ChannelClients(make), lanes, [].append).on_decided(event)
    assert ledger.entry(event.meta.event_id).state == STARTED  # the next consumer reconciles it
    assert not lanes.is_open((TENANT, "zendesk"))


# --- first attempts and retries ----------------------------------------------------------------

FIRST_PASS = RetryLater(delay_s=5.0, max_delay_s=30.0)


def first_attempt_to_retry(ledger: DeliveryLedger, event: ev.TicketDecided, *answers: httpx.Response) -> ev.DeliveryRetry:
    """What a first attempt of `event` (2 calls at most) hands to the retry topic."""
    published: list[Emit] = []
    (emit,) = deliverer(ledger, ZendeskScript(*answers), published, max_attempts=2,
                        retry_later=FIRST_PASS).on_decided(event)
    assert emit.topic is Topic.DELIVERY_RETRIES and published == []
    return emit.event


def test_a_first_attempt_that_meets_an_unavailable_provider_is_handed_to_the_retry_topic(ledger: DeliveryLedger) -> None:
    event = decided()
    retry = first_attempt_to_retry(ledger, event, httpx.Response(503), httpx.Response(502))
    assert retry.decision == event and retry.decision.meta.event_id == event.meta.event_id  # the decision intact
    assert retry.attempts == 2 and retry.error.startswith("zendesk unavailable after 2 attempt(s): post: 502")
    assert retry.retry_at.seconds == int(NOW + FIRST_PASS.delay_s) and retry.meta.tenant_id == TENANT
    entry = ledger.entry(event.meta.event_id)
    assert entry.state == STARTED and entry.status == ""  # not failed: the retry reconciles, then posts


def test_a_retry_after_beyond_the_first_attempts_limit_sets_when_it_is_retried(ledger: DeliveryLedger) -> None:
    retry = first_attempt_to_retry(ledger, decided(), httpx.Response(503, headers={"Retry-After": "12"}))
    assert retry.attempts == 1 and "Retry-After 12s is longer" in retry.error
    assert retry.retry_at.seconds == int(NOW + 12)
    far = decided()
    far.meta.event_id = "a" * 32
    retry = first_attempt_to_retry(ledger, far, httpx.Response(429, headers={"Retry-After": "3600"}))
    assert retry.retry_at.seconds == int(NOW + FIRST_PASS.max_delay_s)


def test_a_first_attempt_finding_its_lane_open_is_retried_too(ledger: DeliveryLedger) -> None:
    lanes = ProviderLanes(4, 30.0)
    script = ZendeskScript(httpx.Response(503), httpx.Response(503))
    first = deliverer(ledger, script, [], lanes, max_attempts=2, retry_later=FIRST_PASS)
    first.on_decided(decided())
    second = decided()
    second.meta.event_id = "f" * 32
    (emit,) = first.on_decided(second)
    assert emit.topic is Topic.DELIVERY_RETRIES and "not called for" in emit.event.error and emit.event.attempts == 0
    assert len(script.requests) == 2


def test_a_refusal_on_a_first_attempt_is_still_dead_lettered(ledger: DeliveryLedger) -> None:
    published: list[Emit] = []
    script = ZendeskScript(httpx.Response(404, json={"error": "RecordNotFound", "description": "Not found"}))
    with pytest.raises(InvalidEvent, match="^not_found: zendesk 404"):
        deliverer(ledger, script, published, max_attempts=2, retry_later=FIRST_PASS).on_decided(decided())
    assert [e.event.status for e in published] == [ev.DELIVERY_STATUS_FAILED]


def test_a_retry_waits_for_its_time_then_posts_under_the_decisions_record_id(ledger: DeliveryLedger) -> None:
    event = decided()
    retry = first_attempt_to_retry(ledger, event, httpx.Response(503), httpx.Response(503))
    published: list[Emit] = []
    waited: list[float] = []
    script = ZendeskScript(httpx.Response(200, json={"comments": []}), POSTED)
    assert deliverer(ledger, script, published, waited=waited).on_retry(retry) == []
    assert waited == [pytest.approx(FIRST_PASS.delay_s)]
    assert [r.method for r in script.requests] == ["GET", "PUT"]  # read back first: the first attempt may have posted
    (emit,) = published
    assert emit.topic is Topic.TICKETS_DELIVERED and emit.key == "zd-1001"
    assert emit.event.status == ev.DELIVERY_STATUS_DELIVERED and emit.event.attempts == 3  # 2 first, 1 now
    # The same id as a first attempt's record would have had: one record id per decision.
    assert emit.event.meta.event_id == derived_event_id(event.meta.event_id, Topic.TICKETS_DELIVERED, 0)
    assert emit.event.decision_event_id == event.meta.event_id
    entry = ledger.entry(event.meta.event_id)
    assert (entry.state, entry.attempts, entry.runs) == (DONE, 3, 2)


def test_a_retry_finding_the_message_on_the_thread_records_it_already_delivered(ledger: DeliveryLedger) -> None:
    event = decided()
    retry = first_attempt_to_retry(ledger, event, httpx.Response(504), httpx.Response(503))  # the 504 may have posted
    script = ZendeskScript(httpx.Response(200, json={"comments": [
        {"id": 555, "public": True, "html_body": plan_for(event).message.html}]}))
    published: list[Emit] = []
    deliverer(ledger, script, published).on_retry(retry)
    (emit,) = published
    assert emit.event.status == ev.DELIVERY_STATUS_ALREADY_DELIVERED and emit.event.external_id == "555"
    assert [r.method for r in script.requests] == ["GET"]  # not posted again
    assert ledger.entry(event.meta.event_id).status == "already_delivered"


def test_a_retry_out_of_attempts_is_recorded_failed_and_dead_lettered(ledger: DeliveryLedger) -> None:
    event = decided()
    retry = first_attempt_to_retry(ledger, event, httpx.Response(503), httpx.Response(503))
    published: list[Emit] = []
    script = ZendeskScript(httpx.Response(200, json={"comments": []}), *[httpx.Response(503)] * 3)
    with pytest.raises(InvalidEvent, match="^provider_unavailable: zendesk unavailable after 3 attempt"):
        deliverer(ledger, script, published).on_retry(retry)
    (emit,) = published
    assert emit.event.status == ev.DELIVERY_STATUS_FAILED and emit.event.attempts == 5
    assert emit.event.meta.event_id == derived_event_id(event.meta.event_id, Topic.TICKETS_DELIVERED, 0)
    entry = ledger.entry(event.meta.event_id)
    assert (entry.state, entry.attempts) == (FAILED, 5)


def test_a_retry_of_a_decision_done_meanwhile_is_recorded_again_not_posted(ledger: DeliveryLedger) -> None:
    event = decided()
    retry = first_attempt_to_retry(ledger, event, httpx.Response(503), httpx.Response(503))
    # A replay of the decision got there first (reading the thread back: the first attempt was cut short).
    deliverer(ledger, ZendeskScript(httpx.Response(200, json={"comments": []}), POSTED), []).on_decided(event)
    published: list[Emit] = []
    script = ZendeskScript()
    deliverer(ledger, script, published).on_retry(retry)
    assert script.requests == [] and [e.event.status for e in published] == [ev.DELIVERY_STATUS_DELIVERED]


def test_a_retry_waiting_for_its_time_at_shutdown_is_left_uncommitted(ledger: DeliveryLedger) -> None:
    event = decided()
    retry = first_attempt_to_retry(ledger, event, httpx.Response(503), httpx.Response(503))
    stopping = threading.Event()
    stopping.set()
    script = ZendeskScript()
    retrying = Deliverer(CHANNELS, ledger, ChannelClients(lambda tenant, provider: None), ProviderLanes(4, 30.0),
                         [].append, wait=stoppable_sleep(stopping), clock=lambda: NOW)
    with pytest.raises(TransientError, match="stopping"):
        retrying.on_retry(retry)
    assert ledger.entry(event.meta.event_id).state == STARTED and script.requests == []


def test_a_retry_without_a_decision_is_invalid(ledger: DeliveryLedger) -> None:
    with pytest.raises(InvalidEvent, match="without a decision"):
        deliverer(ledger, ZendeskScript(), []).on_retry(ev.DeliveryRetry(meta=ev.EventMeta(event_id="r" * 32)))
