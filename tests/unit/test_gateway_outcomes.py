"""Outcomes from the channels (services/gateway/channels/*: `outcomes_from_webhook`, and the
gateway's channel endpoint publishing them or dead-lettering what it cannot read), with the
payloads of docs/channels.md. No server, no Kafka: a recording publisher stands in."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from supportflow.channels import ChannelsConfig
from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import H_DLQ_ERROR, H_DLQ_REASON, H_DLQ_SERVICE, TransientError
from supportflow.topics import Topic
from services.gateway.channels import freshdesk, intercom, zendesk
from services.gateway.channels.outcomes import ChannelOutcomes
from services.gateway.http_api import GatewayApp
from services.gateway.intake import PayloadError, delivery_uuid

TENANT = "demo-bank"
ZENDESK_SECRET, INTERCOM_SECRET, FRESHDESK_SECRET = "zd-signing-secret", "ic-client-secret", "fd-shared-secret"
ADMIN_ID, API_USER = "814860", "sf@demo-bank.example"
CHANNELS = ChannelsConfig.model_validate({"tenants": {TENANT: {
    "zendesk": {"base_url": "https://demobank.zendesk.com", "email": API_USER, "api_token": "t",
                "webhook_secret": ZENDESK_SECRET},
    "intercom": {"access_token": "t", "client_secret": INTERCOM_SECRET, "admin_id": ADMIN_ID},
    "freshdesk": {"base_url": "https://demobank.freshdesk.com", "api_key": "k", "webhook_secret": FRESHDESK_SECRET},
}}})
ZENDESK, INTERCOM, FRESHDESK = (CHANNELS.tenants[TENANT].zendesk, CHANNELS.tenants[TENANT].intercom,
                                CHANNELS.tenants[TENANT].freshdesk)
REQUESTER, AGENT = "20978392", "361001"


def raw(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def zendesk_hook(event: str, *, user: tuple[str, str] = (AGENT, "lee@demo-bank.example"), **ticket: object) -> dict:
    body = {
        "id": "35436", "subject": "Card not arrived", "description": "My new card has not arrived.",
        "latest_comment": {"id": "9002", "html_body": "<p>I already explained this: it never came.</p>",
                           "author_id": REQUESTER},
        "comment_count": "3", "status": "Solved", "via": "Web form", "priority": "-", "tags": "",
        "requester": {"id": REQUESTER, "email": "ana@example.com", "name": "Ana"}, "attachments_count": "0",
        "updated_at": "2026-12-06T07:00:00Z", "satisfaction_rating": {"score": "unoffered", "comment": ""},
        "public_comment_authors": f"{REQUESTER} 10000001 {REQUESTER}",
    }
    body.update(ticket)
    return {"event": event, "current_user": {"id": user[0], "email": user[1]}, "ticket": body}


def zendesk_outcomes(payload: dict, invocation: str = "inv-1") -> ChannelOutcomes:
    return zendesk.outcomes_from_webhook(ZENDESK, TENANT, raw(payload), {zendesk.INVOCATION_HEADER: invocation})


def only(found: ChannelOutcomes) -> ev.FeedbackReceived:
    assert not found.refused, found.refused
    [outcome] = found.outcomes
    return outcome.feedback


# --- Zendesk --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, user, expected", [
    ("Solved", (AGENT, "lee@demo-bank.example"), ("solved", "agent")),
    ("Closed", ("", ""), ("closed", "system")),  # an automation closing it
    ("Pending", ("10000001", API_USER), ("pending", "system")),  # Supportflow's own API user
    ("On-hold", (AGENT, "lee@demo-bank.example"), ("on_hold", "agent")),
    ("Solved", (REQUESTER, "ana@example.com"), ("solved", "customer")),
])
def test_a_zendesk_status_change_is_mapped_with_who_made_it(status, user, expected):
    event = only(zendesk_outcomes(zendesk_hook(zendesk.STATUS_CHANGED, status=status, user=user)))
    assert (event.status_change.status, event.status_change.changed_by) == expected
    assert (event.ticket_id, event.source, event.channel) == ("zd-35436", "zendesk", tk.CHANNEL_WEB_FORM)


def test_a_reopened_zendesk_ticket_and_its_redelivery_have_one_event_id():
    found = zendesk_outcomes(zendesk_hook(zendesk.REOPENED, status="Open", user=(REQUESTER, "ana@example.com")))
    [outcome] = found.outcomes
    assert (outcome.feedback.status_change.status, outcome.feedback.status_change.changed_by) == ("reopened", "customer")
    again = zendesk_outcomes(zendesk_hook(zendesk.REOPENED, status="Open", user=(REQUESTER, "ana@example.com")))
    assert again.outcomes[0].event_id(TENANT) == outcome.event_id(TENANT) == delivery_uuid(
        "zendesk-outcome-status_change", TENANT, "inv-1")
    other = zendesk_outcomes(zendesk_hook(zendesk.REOPENED, status="Open"), invocation="inv-2")
    assert other.outcomes[0].event_id(TENANT) != outcome.event_id(TENANT)


@pytest.mark.parametrize("score, expected", [("good", 100.0), ("bad", 0.0), ("Good, I'm satisfied", 100.0),
                                             ("Bad, I'm unsatisfied", 0.0)])
def test_a_zendesk_rating_good_is_100_and_bad_is_0(score, expected):
    event = only(zendesk_outcomes(zendesk_hook(zendesk.RATED, satisfaction_rating={"score": score, "comment": ""})))
    assert event.csat.score == expected and event.csat.latency == ev.CSAT_LATENCY_AT_RESOLUTION


@pytest.mark.parametrize("score", ["offered", "unoffered", "Offered"])
def test_a_zendesk_rating_offered_or_unoffered_is_not_a_rating(score):
    found = zendesk_outcomes(zendesk_hook(zendesk.RATED, satisfaction_rating={"score": score}))
    assert found.outcomes == () and found.refused == () and "not given" in found.ignored


@pytest.mark.parametrize("score", ["excellent", "5", ""])
def test_a_zendesk_rating_of_an_unknown_form_is_refused_naming_the_field(score):
    found = zendesk_outcomes(zendesk_hook(zendesk.RATED, satisfaction_rating={"score": score}))
    [refused] = found.refused
    assert found.outcomes == () and refused.reason == "invalid_rating" and refused.ticket_id == "zd-35436"
    assert refused.path == "ticket.satisfaction_rating.score" and "ticket.satisfaction_rating.score" in refused.message


def test_an_unknown_zendesk_status_is_refused():
    [refused] = zendesk_outcomes(zendesk_hook(zendesk.STATUS_CHANGED, status="Archived")).refused
    assert (refused.reason, refused.path) == ("invalid_status", "ticket.status")


def test_a_requester_comment_is_a_customer_reply_counting_the_agents_public_comments_before_it():
    payload = zendesk_hook(zendesk.REQUESTER_UPDATED, status="Open", user=(REQUESTER, "ana@example.com"))
    event = only(zendesk_outcomes(payload))
    assert event.customer_reply.text == "I already explained this: it never came."
    assert event.customer_reply.agent_turns_before == 1
    payload["ticket"].pop("public_comment_authors")  # without the Liquid list: comment_count - 2
    assert only(zendesk_outcomes(payload)).customer_reply.agent_turns_before == 1
    # the ticket itself is still read as today: the same webhook continues the ticket
    assert isinstance(zendesk.ticket_from_webhook(ZENDESK, TENANT, raw(payload), {}), zendesk.ChannelTicket)


def test_an_agents_comment_and_a_new_ticket_carry_no_outcome():
    agents = zendesk_hook(zendesk.REQUESTER_UPDATED, latest_comment={"id": "9", "html_body": "<p>x</p>",
                                                                    "author_id": AGENT})
    assert zendesk_outcomes(agents).outcomes == ()
    created = zendesk_outcomes(zendesk_hook(zendesk.CREATED))
    assert created.outcomes == () and not created.handled


# --- Intercom -------------------------------------------------------------------------------------


def intercom_hook(topic: str, *, parts: list[dict] | None = None, rating: object = None,
                  notification: str = "notif_1") -> dict:
    item = {
        "type": "conversation", "id": "215472364578", "state": "open",
        "source": {"type": "conversation", "id": "3021", "body": "<p>My card has not arrived</p>",
                   "author": {"type": "user", "id": "u-1"}},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "u-1"}]},
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts or []},
        "conversation_rating": None if rating is None else {"rating": rating, "remark": "",
                                                            "contact": {"type": "contact", "id": "u-1"}},
    }
    return {"type": "notification_event", "id": notification, "topic": topic, "data": {"item": item}}


def part(kind: str, author_type: str, author_id: str, body: str | None = None) -> dict:
    return {"type": "conversation_part", "part_type": kind, "body": body, "author": {"type": author_type, "id": author_id}}


def intercom_outcomes(payload: dict) -> ChannelOutcomes:
    return intercom.outcomes_from_webhook(INTERCOM, TENANT, raw(payload), {})


@pytest.mark.parametrize("rating, score", [(1, 0.0), (2, 25.0), (3, 50.0), (4, 75.0), (5, 100.0), ("5", 100.0)])
def test_an_intercom_rating_of_1_to_5_is_0_to_100(rating, score):
    event = only(intercom_outcomes(intercom_hook(intercom.RATED, rating=rating)))
    assert event.csat.score == score and event.ticket_id == "ic-215472364578" and event.channel == tk.CHANNEL_CHAT


@pytest.mark.parametrize("rating", [0, 6, 4.5, -1, True, "great", None, [5]])
def test_an_intercom_rating_out_of_range_or_of_another_form_is_refused(rating):
    payload = intercom_hook(intercom.RATED, rating=5)
    payload["data"]["item"]["conversation_rating"]["rating"] = rating
    [refused] = intercom_outcomes(payload).refused
    assert refused.reason == "invalid_rating" and refused.path == "data.item.conversation_rating.rating"
    assert "from 1 to 5" in refused.message


def test_an_intercom_rating_notification_without_a_rating_object_is_a_missing_field():
    with pytest.raises(PayloadError, match="data.item.conversation_rating is missing"):
        intercom_outcomes(intercom_hook(intercom.RATED))


def test_an_intercom_reply_counts_the_public_answers_before_it_and_reopens_a_closed_conversation():
    parts = [part("comment", "bot", ADMIN_ID, "<p>Here is how.</p>"), part("note", "admin", "77", "<p>vip</p>"),
             part("comment", "admin", "77", "<p>Anything else?</p>"), part("close", "admin", "77"),
             part("comment", "user", "u-1", "<p>I already told you, it is not here.</p>")]
    found = intercom_outcomes(intercom_hook(intercom.USER_REPLIED, parts=parts))
    reply, reopened = (o.feedback for o in found.outcomes)
    assert reply.customer_reply.text == "I already told you, it is not here."
    assert reply.customer_reply.agent_turns_before == 2  # the bot's and the agent's comments, not the note
    assert (reopened.status_change.status, reopened.status_change.changed_by) == ("reopened", "customer")
    still_open = intercom_outcomes(intercom_hook(intercom.USER_REPLIED, parts=parts[:3] + parts[4:]))
    assert [o.kind for o in still_open.outcomes] == ["customer_reply"]


@pytest.mark.parametrize("topic, author, expected", [
    (intercom.CLOSED, ("admin", "77"), ("closed", "agent")),
    (intercom.CLOSED, ("admin", ADMIN_ID), ("closed", "system")),  # Supportflow's own admin
    (intercom.OPENED, ("admin", "77"), ("reopened", "agent")),
])
def test_an_intercom_close_or_reopen_is_a_status_change(topic, author, expected):
    kind = "close" if topic == intercom.CLOSED else "open"
    event = only(intercom_outcomes(intercom_hook(topic, parts=[part(kind, *author)])))
    assert (event.status_change.status, event.status_change.changed_by) == expected


# --- Freshdesk ------------------------------------------------------------------------------------


def freshdesk_hook(event: str, **fields: object) -> dict:
    body = {"event": event, "ticket_id": "1042", "ticket_subject": "Refund", "ticket_description": "<p>x</p>",
            "ticket_latest_public_comment": "<p>Did you not read my first message?</p>", "ticket_status": "Resolved",
            "ticket_source": "Email", "ticket_updated_at": "2026-12-06T07:00:00Z", "performed_by": "agent"}
    body.update(fields)
    return {"freshdesk_webhook": body}


def freshdesk_outcomes(payload: dict) -> ChannelOutcomes:
    return freshdesk.outcomes_from_webhook(FRESHDESK, TENANT, raw(payload), {})


@pytest.mark.parametrize("status, expected", [("Resolved", "solved"), ("4", "solved"), ("Closed", "closed"),
                                              ("5", "closed"), ("Pending", "pending"), ("2", "open")])
def test_a_freshdesk_status_is_read_by_name_or_api_number(status, expected):
    event = only(freshdesk_outcomes(freshdesk_hook(freshdesk.STATUS_CHANGED, ticket_status=status)))
    assert (event.status_change.status, event.status_change.changed_by) == (expected, "agent")
    assert (event.ticket_id, event.channel) == ("fd-1042", tk.CHANNEL_EMAIL)


def test_a_freshdesk_reopen_and_an_unknown_status():
    event = only(freshdesk_outcomes(freshdesk_hook(freshdesk.REOPENED, ticket_status="Open", performed_by="requester")))
    assert (event.status_change.status, event.status_change.changed_by) == ("reopened", "customer")
    [refused] = freshdesk_outcomes(freshdesk_hook(freshdesk.STATUS_CHANGED, ticket_status="9")).refused
    assert (refused.reason, refused.path) == ("invalid_status", "freshdesk_webhook.ticket_status")


@pytest.mark.parametrize("rating, score", [(103, 100.0), ("-103", 0.0), (100, 50.0), (101, 400 / 6), (-102, 100 / 6)])
def test_a_freshdesk_survey_answer_is_spread_evenly_on_0_to_100(rating, score):
    event = only(freshdesk_outcomes(freshdesk_hook(freshdesk.FEEDBACK, satisfaction_rating=rating)))
    assert event.csat.score == pytest.approx(score)


@pytest.mark.parametrize("rating", [104, 0, 5, "happy", None])
def test_a_freshdesk_survey_answer_out_of_the_scale_is_refused(rating):
    [refused] = freshdesk_outcomes(freshdesk_hook(freshdesk.FEEDBACK, satisfaction_rating=rating)).refused
    assert (refused.reason, refused.path) == ("invalid_rating", "freshdesk_webhook.satisfaction_rating")


def test_a_freshdesk_customer_reply_is_an_outcome_and_still_a_ticket():
    payload = freshdesk_hook(freshdesk.CUSTOMER_REPLIED)
    event = only(freshdesk_outcomes(payload))
    assert event.customer_reply.text == "Did you not read my first message?"
    assert event.customer_reply.agent_turns_before == 0  # Freshdesk's webhook does not carry the conversation
    assert isinstance(freshdesk.ticket_from_webhook(FRESHDESK, TENANT, raw(payload), {}), freshdesk.ChannelTicket)


# --- the channel endpoint -------------------------------------------------------------------------


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[Topic, str, object]] = []
        self.raw: list[tuple[str, bytes | None, bytes, list]] = []
        self.flushes = 0
        self.fail = fail

    def publish(self, topic, key, event) -> None:
        self.published.append((topic, key, event))

    def produce_raw(self, topic_name, key, value, headers) -> None:
        self.raw.append((topic_name, key, value, headers))

    def flush(self, timeout_s: float = 30.0) -> None:
        self.flushes += 1
        if self.fail:
            raise TransientError("broker down")


def sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def app(publisher):
    return GatewayApp(publisher, default_tenant="rho-bank", webhook_secret="", max_body_bytes=10_000,
                      channels=CHANNELS, topic_prefix="t1.")


def post_zendesk(app, payload: dict, secret: str = ZENDESK_SECRET, invocation: str = "inv-7"):
    body = raw(payload)
    headers = zendesk.signed_headers(secret, body) | {zendesk.INVOCATION_HEADER: invocation}
    return app.handle(f"/v1/channels/zendesk/{TENANT}", body, headers)


def test_a_signed_outcome_is_published_to_the_feedback_topic_keyed_by_the_ticket(app, publisher):
    before = sample("supportflow_gateway_outcomes_total", {"provider": "zendesk", "kind": "status_change"})
    status, reply = post_zendesk(app, zendesk_hook(zendesk.STATUS_CHANGED))
    assert (status, reply) == (202, {"ticket_id": "zd-35436", "tenant_id": TENANT, "outcomes": ["status_change"]})
    [(topic, key, event)] = publisher.published
    assert (topic, key) == (Topic.TICKETS_FEEDBACK, "zd-35436")
    assert event.meta.tenant_id == TENANT and event.meta.producer == "gateway"
    assert event.meta.event_id == delivery_uuid("zendesk-outcome-status_change", TENANT, "inv-7")
    assert event.status_change.status == "solved" and event.source == "zendesk"
    assert sample("supportflow_gateway_outcomes_total", {"provider": "zendesk", "kind": "status_change"}) == before + 1


def test_a_customer_reply_is_published_as_a_ticket_and_an_outcome_with_one_acknowledgement(app, publisher):
    payload = zendesk_hook(zendesk.REQUESTER_UPDATED, status="Open", user=(REQUESTER, "ana@example.com"))
    status, reply = post_zendesk(app, payload)
    assert status == 202 and reply["outcomes"] == ["customer_reply"]
    assert [(topic, key) for topic, key, _ in publisher.published] == [
        (Topic.TICKETS_RECEIVED, "zd-35436"), (Topic.TICKETS_FEEDBACK, "zd-35436")]
    assert publisher.flushes == 1


def test_an_unsigned_or_forged_outcome_is_401_and_nothing_is_published(app, publisher):
    payload = zendesk_hook(zendesk.RATED, satisfaction_rating={"score": "good"})
    assert post_zendesk(app, payload, secret="guess")[0] == 401
    body = raw(intercom_hook(intercom.RATED, rating=5))
    assert app.handle(f"/v1/channels/intercom/{TENANT}", body, {})[0] == 401
    assert app.handle(f"/v1/channels/intercom/{TENANT}", body, intercom.signed_headers("guess", body))[0] == 401
    fd = raw(freshdesk_hook(freshdesk.FEEDBACK, satisfaction_rating=103))
    assert app.handle(f"/v1/channels/freshdesk/{TENANT}", fd, freshdesk.signed_headers("guess"))[0] == 401
    assert publisher.published == [] and publisher.raw == []


def test_a_rating_out_of_range_is_dead_lettered_with_its_reason_counted_and_answered_400(app, publisher):
    before = sample("supportflow_gateway_outcomes_dead_lettered_total", {"provider": "intercom", "reason": "invalid_rating"})
    events_before = sample("supportflow_events_dead_lettered_total",
                           {"service": "gateway", "topic": "tickets.feedback", "reason": "invalid_rating"})
    body = raw(intercom_hook(intercom.RATED, rating=9))
    status, reply = app.handle(f"/v1/channels/intercom/{TENANT}", body, intercom.signed_headers(INTERCOM_SECRET, body))
    assert status == 400 and reply["fields"] == ["data.item.conversation_rating.rating"]
    assert "data.item.conversation_rating.rating must be a whole number from 1 to 5" in reply["error"]
    assert publisher.published == []
    [(topic_name, key, value, headers)] = publisher.raw
    assert (topic_name, key, value) == ("t1.tickets.feedback.dlq", b"ic-215472364578", body)
    headers = dict(headers)
    assert headers[H_DLQ_REASON] == b"invalid_rating" and headers[H_DLQ_SERVICE] == b"gateway"
    assert b"conversation_rating.rating" in headers[H_DLQ_ERROR]
    assert sample("supportflow_gateway_outcomes_dead_lettered_total",
                  {"provider": "intercom", "reason": "invalid_rating"}) == before + 1
    assert sample("supportflow_events_dead_lettered_total",
                  {"service": "gateway", "topic": "tickets.feedback", "reason": "invalid_rating"}) == events_before + 1


def test_an_offered_rating_is_200_ignored(app, publisher):
    assert post_zendesk(app, zendesk_hook(zendesk.RATED, satisfaction_rating={"score": "offered"})) == (
        200, {"ignored": "a satisfaction rating offered, not given"})
    assert publisher.published == [] and publisher.raw == []


def test_an_outcome_kafka_does_not_acknowledge_is_503_so_the_provider_retries():
    app = GatewayApp(RecordingPublisher(fail=True), default_tenant="t", webhook_secret="", max_body_bytes=10_000,
                     channels=CHANNELS)
    body = raw(freshdesk_hook(freshdesk.FEEDBACK, satisfaction_rating=103))
    assert app.handle(f"/v1/channels/freshdesk/{TENANT}", body, freshdesk.signed_headers(FRESHDESK_SECRET))[0] == 503
