"""The weekly QA sample: which decided tickets go to the workspace's QA queue. Pure and seeded.

A ticket is sampled when the hash of (seed, tenant, ticket id), read as a number in [0, 1), is under
the configured rate (1-3% of a week's conversations; the hash makes the choice the same in every
replay and independent of arrival order), and, so that no archetype goes unreviewed, the first
ticket of each archetype in each ISO week (of its decision) when none was sampled yet. The learner
emits a QaSampleRequested for each; the reviewer's verdict comes back as an agent action
(QA severity) or QA feedback and feeds the hallucinated_policy counts.
"""

from __future__ import annotations

import hashlib

from services.learner.entries import EntryMap
from services.learner.kpis import iso_week
from services.learner.state import listed

MAX_TENANT_WEEKS = 1024  # (tenant, week) pairs remembered: the guarantee needs only the weeks still being decided


def sample_draw(seed: str, tenant: str, ticket_id: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{tenant}\0{ticket_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class QaSampler:
    def __init__(self, rate: float, seed: str) -> None:
        self._rate = rate
        self._seed = seed
        # (tenant, week) -> archetypes that already have a sample that week
        self._covered: EntryMap[tuple[str, str], set[str]] = EntryMap(
            "qa-covered", sorted, lambda archetypes: {str(archetype) for archetype in listed(archetypes)})

    def entry_maps(self) -> list[EntryMap]:
        return [self._covered]

    def consider(self, tenant: str, archetype: str, ticket_id: str, decided_at: float) -> str | None:
        """The ISO week to sample the ticket into, or None when it is not sampled."""
        week = iso_week(decided_at)
        covered = self._covered.setdefault((tenant, week), set())
        while len(self._covered) > MAX_TENANT_WEEKS:
            self._covered.popitem(last=False)
        if sample_draw(self._seed, tenant, ticket_id) < self._rate or archetype not in covered:
            covered.add(archetype)
            self._covered.touch((tenant, week))
            return week
        return None
