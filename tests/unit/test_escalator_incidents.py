"""Burst detection: thresholds, windows, deterministic ids, joining, growth and redeliveries."""

from __future__ import annotations

from supportflow.contracts.v1 import ticket_pb2 as tk

from services.escalator.config import IncidentConfig
from services.escalator.incidents import IncidentSignature, IncidentTracker, incident_signature

CONFIG = IncidentConfig(window_s=600, min_tickets=5, intents=frozenset({"card_not_working"}))
SIG = IncidentSignature("rho-bank", "mobile app", "ERR-504")
T0 = 1_700_000_000.0


def feed(tracker, count, start=T0, step=60.0, prefix="t", signature=SIG):
    return [tracker.observe(f"{prefix}{i}", signature, start + i * step) for i in range(count)]


def test_four_tickets_are_not_an_incident_and_the_fifth_makes_one():
    tracker = IncidentTracker(CONFIG)
    updates = feed(tracker, 5)
    assert updates[:4] == [None] * 4
    created = updates[4]
    assert created.created is True
    assert created.ticket_ids == ("t0", "t1", "t2", "t3", "t4")
    assert created.size == 5
    assert created.first_seen == T0
    assert all(tracker.incident_of(f"t{i}") == created.incident_id for i in range(5))


def test_incident_id_is_deterministic_and_depends_on_signature_and_start():
    first, second = IncidentTracker(CONFIG), IncidentTracker(CONFIG)
    a = feed(first, 5)[-1]
    b = feed(second, 5)[-1]
    assert a.incident_id == b.incident_id
    other = feed(IncidentTracker(CONFIG), 5, start=T0 + 1)[-1]
    assert other.incident_id != a.incident_id
    assert a.incident_id.startswith("inc-")


def test_tickets_spread_wider_than_the_window_never_form_an_incident():
    tracker = IncidentTracker(CONFIG)
    assert feed(tracker, 20, step=200.0) == [None] * 20  # only 4 fit in any 600 s window


def test_out_of_order_tickets_inside_the_window_still_count():
    tracker = IncidentTracker(CONFIG)
    times = [T0 + 300, T0, T0 + 100, T0 + 500, T0 + 200]
    updates = [tracker.observe(f"t{i}", SIG, at) for i, at in enumerate(times)]
    assert updates[-1] is not None
    assert updates[-1].ticket_ids == ("t1", "t2", "t4", "t0", "t3")  # in time order
    assert updates[-1].first_seen == T0


def test_signatures_are_counted_apart():
    tracker = IncidentTracker(CONFIG)
    other = IncidentSignature("rho-bank", "web", "ERR-504")
    other_tenant = IncidentSignature("acme", "mobile app", "ERR-504")
    for i in range(4):
        assert tracker.observe(f"a{i}", SIG, T0 + i) is None
        assert tracker.observe(f"b{i}", other, T0 + i) is None
        assert tracker.observe(f"c{i}", other_tenant, T0 + i) is None


def test_later_tickets_join_and_growth_is_reported_at_each_doubling():
    tracker = IncidentTracker(CONFIG)
    created = feed(tracker, 5)[-1]
    later = [tracker.observe(f"late{i}", SIG, T0 + 300 + i * 60) for i in range(15)]
    grown = [u for u in later if u is not None]
    assert [u.size for u in grown] == [10, 20]
    assert all(u.created is False and u.incident_id == created.incident_id for u in grown)
    assert tracker.incident_of("late14") == created.incident_id


def test_after_a_quiet_window_a_new_burst_is_a_new_incident():
    tracker = IncidentTracker(CONFIG)
    first = feed(tracker, 5)[-1]
    quiet_start = T0 + 4 * 60 + 601
    assert tracker.observe("after", SIG, quiet_start) is None
    assert tracker.incident_of("after") == ""
    second = feed(tracker, 4, start=quiet_start + 1, prefix="n")[-1]
    assert second is not None and second.created
    assert second.incident_id != first.incident_id
    assert second.ticket_ids[0] == "after"


def test_a_redelivered_ticket_is_counted_once():
    tracker = IncidentTracker(CONFIG)
    for _ in range(10):
        assert tracker.observe("same", SIG, T0) is None
    assert feed(tracker, 3)[-1] is None  # 4 distinct tickets so far


def test_signature_uses_normalised_error_code_before_intent():
    cls = tk.Classification(intent="card_arrival")
    a = tk.NormalizedTicket(product="Mobile  App", identifiers=[tk.Identifier(kind="error_code", value="err_504")])
    b = tk.NormalizedTicket(product="mobile app", identifiers=[tk.Identifier(kind="error_code", value="ERR-504")])
    assert incident_signature("rho-bank", a, cls, CONFIG) == incident_signature("rho-bank", b, cls, CONFIG) == SIG


def test_only_fault_intents_or_error_codes_are_candidates():
    normalized = tk.NormalizedTicket()
    faq = incident_signature("rho-bank", normalized, tk.Classification(intent="card_arrival"), CONFIG)
    fault = incident_signature("rho-bank", normalized, tk.Classification(intent="card_not_working"), CONFIG)
    assert faq is None
    assert fault == IncidentSignature("rho-bank", "unspecified", "card_not_working")
