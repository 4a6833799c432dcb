"""The weekly QA sample: 1-3% of a week's conversations at the default rate, seeded (a replay
samples the same tickets), and at least one ticket per archetype per week."""

from __future__ import annotations

from services.learner.config import LearnerConfig
from services.learner.qa_sampling import QaSampler

WEEK_START = 1_796_601_600.0  # Monday 2026-12-07 00:00 UTC, ISO week 2026-W50
DAY = 86400.0


def sample(sampler: QaSampler, tickets) -> list[str]:
    return [ticket for ticket, archetype, at in tickets if sampler.consider("demo-bank", archetype, ticket, at)]


def test_the_default_rate_samples_one_to_three_percent_seeded():
    config = LearnerConfig.load().qa_sampling
    tickets = [(f"t{i}", "faq_bounded", WEEK_START + (i % 7) * DAY) for i in range(5000)]
    first = sample(QaSampler(config.rate, config.seed), tickets)
    assert 0.01 * 5000 <= len(first) <= 0.03 * 5000
    # Read in another order, only the week's guaranteed first ticket can differ: the draw is by ticket.
    assert len(set(sample(QaSampler(config.rate, config.seed), list(reversed(tickets)))) ^ set(first)) <= 2
    assert set(sample(QaSampler(config.rate, config.seed), tickets)) == set(first)  # the same tickets again
    assert set(sample(QaSampler(config.rate, "another-seed"), tickets)) != set(first)


def test_every_archetype_gets_at_least_one_sample_a_week():
    sampler = QaSampler(0.0001, "seed")  # a rate so low the draw picks nothing
    tickets = [("rare-1", "account_specific", WEEK_START + DAY), ("rare-2", "account_specific", WEEK_START + 2 * DAY),
               ("next-week", "account_specific", WEEK_START + 8 * DAY), ("other", "repetitive", WEEK_START + DAY)]
    assert sample(sampler, tickets) == ["rare-1", "next-week", "other"]
    assert sampler.consider("demo-bank", "account_specific", "x", WEEK_START) is None  # that week is covered
    assert sampler.consider("acme", "account_specific", "y", WEEK_START) == "2026-W50"  # another tenant's is not
