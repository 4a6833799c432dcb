"""Help-centre sync against the real Weaviate and the local Zendesk stand-in
(tooling/channel_servers): a first sync indexes the help centre with its labels' metadata, a second
writes nothing, an edited article is re-indexed alone, a deleted one leaves search; `supportflow kb
sync --json` runs the same sync from the tenant's channels file."""

from __future__ import annotations

import json
import textwrap
import uuid

import httpx
import pytest
from pydantic import SecretStr

from services.retriever.components import build_components
from services.retriever.sync import sync_help_center
from supportflow.channels import ZendeskChannel

pytestmark = pytest.mark.infra

EMAIL = "supportflow@demo-bank.example"
TOKEN = "hc-sync-test-token"

ARTICLES = {
    "card-delivery": """\
        ---
        id: 3600200001
        title: When will my card arrive?
        intents: [card_arrival, card_delivery_estimate]
        updated_at: 2026-01-10T09:00:00Z
        review_by: 2026-12-31
        is_policy: false
        locale: en-us
        ---
        We post every new card the working day after you order it.

        ## Delivery times
        - UK: 3 to 5 working days.
        - Elsewhere in the EEA: 5 to 10 working days.

        ## Tracking your card
        Open the app, tap Cards, then Delivery, to see where your card is.
        """,
    "card-fees": """\
        ---
        id: 3600200002
        title: Card fees
        intents: [card_payment_fee_charged]
        updated_at: 2026-01-11T09:00:00Z
        review_by: 2026-07-01
        is_policy: true
        locale: en-us
        ---
        ## Replacement cards
        A replacement card costs £5.00. The first physical card is free.

        ## Payments abroad
        Card payments in a foreign currency have no fee up to £1,000 a month, then 0.5%.
        """,
    "top-up": """\
        ---
        id: 3600200003
        title: Topping up your account
        intents: [top_up_failed]
        updated_at: 2026-01-12T09:00:00Z
        is_policy: false
        locale: en-us
        ---
        ## Bank transfer
        Send money from a bank account in your name; it arrives within 1 working day.

        ## Debit card
        A top-up by debit card is instant. A declined top-up is never charged.
        """,
    "about-us": """\
        ---
        id: 3600200004
        title: About Demo Bank
        updated_at: 2026-01-05T09:00:00Z
        locale: en-us
        ---
        Demo Bank is a digital bank for people who live and travel across Europe. Our offices are in
        London and Lisbon, and our support team answers in the app every day of the year.
        """,
}


@pytest.fixture
def help_center_dir(tmp_path):
    folder = tmp_path / "help-center"
    folder.mkdir()
    for name, text in ARTICLES.items():
        (folder / f"{name}.md").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


@pytest.fixture
def tenant(settings):
    name = f"hc-{uuid.uuid4().hex[:10]}"
    yield name
    parts = build_components(settings)
    try:
        parts.knowledge.drop_tenant(name)
    finally:
        parts.close()


@pytest.fixture
def zendesk(tenant, help_center_dir, tmp_path):
    from tooling.channel_servers import ChannelServers, ChannelServersConfig, TenantAccounts

    accounts = TenantAccounts(
        tenant=tenant, gateway_url="http://127.0.0.1:9", zendesk_email=EMAIL, zendesk_api_token=TOKEN,
        zendesk_webhook_secret="zd-webhook-secret", intercom_access_token="ic-token",
        intercom_client_secret="ic-secret", intercom_admin_id="814860", freshdesk_api_key="fd-key",
        freshdesk_webhook_secret="fd-secret", mailbox=f"support@{tenant}.example",
        help_center_dir=str(help_center_dir),
    )
    servers = ChannelServers(ChannelServersConfig(tenants=(accounts,), state_dir=str(tmp_path / "state")))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def channel(zendesk):
    return ZendeskChannel(base_url=zendesk.zendesk_url, email=EMAIL, api_token=SecretStr(TOKEN),
                          webhook_secret=SecretStr("zd-webhook-secret"))


@pytest.fixture
def parts(settings):
    components = build_components(settings, query_timeout_s=10.0)
    yield components
    components.close()


def top_article(parts, tenant, query, **options):
    result = parts.searcher.search(tenant, query, 4, **options)
    return result.articles[0] if result.articles else None


def test_sync_indexes_the_help_centre_then_follows_edits_and_deletions(settings, tenant, zendesk, channel, parts):
    first = sync_help_center(settings, tenant, channel)
    assert (first["fetched"], first["listed"], first["indexed"], first["deleted"]) == (4, 4, 4, 0)
    assert first["cursor"] == "2026-01-12T09:00:00+00:00"

    delivery = top_article(parts, tenant, "how long does it take for my new card to arrive")
    assert delivery.article_id == "3600200001" and delivery.title == "When will my card arrive?"
    passage = delivery.passages[0]
    assert passage.intents == ("card_arrival", "card_delivery_estimate") and passage.is_policy is False
    assert passage.url == f"{zendesk.zendesk_url}/hc/en-us/articles/3600200001-When-will-my-card-arrive"
    fees = top_article(parts, tenant, "what does a replacement card cost")
    assert fees.article_id == "3600200002" and fees.passages[0].is_policy is True
    assert fees.passages[0].section.startswith("Replacement cards")  # headings survive the HTML round trip
    about = top_article(parts, tenant, "where are Demo Bank's offices")
    assert about.article_id == "3600200004" and about.passages[0].intents == () and not about.passages[0].is_policy
    assert parts.searcher.search("another-tenant", "replacement card cost", 4).articles == ()

    second = sync_help_center(settings, tenant, channel)
    assert (second["indexed"], second["deleted"], second["unchanged"]) == (0, 0, second["fetched"])
    assert second["cursor"] == first["cursor"]

    touched = httpx.post(f"{zendesk.zendesk_url}/_sim/help_center/touch",
                         json={"id": 3600200003, "title": "Adding money to your account"}, timeout=10)
    assert touched.status_code == 200, touched.text
    third = sync_help_center(settings, tenant, channel)
    assert (third["indexed"], third["deleted"]) == (1, 0)
    assert third["cursor"] > first["cursor"]
    assert top_article(parts, tenant, "my debit card top-up was declined").title == "Adding money to your account"
    assert sync_help_center(settings, tenant, channel)["indexed"] == 0

    deleted = httpx.delete(f"{zendesk.zendesk_url}/api/v2/help_center/articles/3600200002.json",
                           auth=(f"{EMAIL}/token", TOKEN), timeout=10)
    assert deleted.status_code == 204, deleted.text
    fourth = sync_help_center(settings, tenant, channel)
    assert (fourth["indexed"], fourth["deleted"]) == (0, 1)
    assert parts.knowledge.count(tenant, "3600200002") == 0
    result = parts.searcher.search(tenant, "what does a replacement card cost", 4)
    assert "3600200002" not in {a.article_id for a in result.articles}
    assert {a.article_id for a in result.articles} <= {"3600200001", "3600200003", "3600200004"}


def test_kb_sync_command_reads_the_tenants_zendesk_channel(tenant, zendesk, tmp_path, monkeypatch, capsys):
    from tooling import cli

    channels = tmp_path / "channels.yaml"
    channels.write_text(json.dumps({"tenants": {tenant: {"zendesk": {
        "base_url": zendesk.zendesk_url, "email": EMAIL, "api_token": "${HC_SYNC_TEST_TOKEN}",
        "webhook_secret": "zd-webhook-secret"}}}}), encoding="utf-8")
    monkeypatch.setenv("SUPPORTFLOW_CHANNELS_PATH", str(channels))
    monkeypatch.setenv("HC_SYNC_TEST_TOKEN", TOKEN)
    assert cli.main(["kb", "sync", "--tenant", tenant, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tenant"] == tenant and summary["indexed"] == 4 and summary["mode"] == "full"
    assert cli.main(["kb", "sync", "--tenant", tenant, "--changes-only"]) == 0
    assert "0 indexed" in capsys.readouterr().out

    monkeypatch.setenv("HC_SYNC_TEST_TOKEN", "wrong-token")
    with pytest.raises(SystemExit, match="HTTP 401"):
        cli.main(["kb", "sync", "--tenant", tenant])
