"""A tenant onboarded by data alone (issue 27 item 1): the retail folder is copied into a tenants
folder of its own, its intent model is trained from its examples' train split as
`supportflow classifier train --tenant` trains it, and the classifier built from its settings classifies
retail tickets with retail's model, catalog and routing policy, while the demo bank's tickets on the
same triage keep the deployment's Banking77 model. No line of code names the tenant.

Both models use MiniLM alone so the module trains in seconds; the figure with both encoders is
`python -m benchmarks.tenant_classifier_eval --tenant retail`.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from supportflow.contracts.v1 import events_pb2 as ev
from supportflow.contracts.v1 import ticket_pb2 as tk
from supportflow.eventbus import new_meta
from tooling.sample_data import banking77_rows
from supportflow.settings import CHECKOUT_TENANTS_DIR, SettingsError
from tooling.settings import FleetSettings

from encoders.embedding import load_encoder
from services.classifier.handlers import TicketTriage, routing_override_handler
from services.classifier.intent_catalog import CatalogError, default_catalog, load_intent_catalog
from services.classifier.intent_model import IntentModel
from services.classifier.main import build_triage
from services.classifier.routing import DEFAULT_POLICY_PATH, PolicyError, load_policy
from tooling.commands import classifier as classifier_cli

TENANT = "retail"
BANKING_INTENTS = ("exchange_rate", "card_arrival", "lost_or_stolen_card")
BANKING_ROWS_PER_INTENT = 60


def examples(folder: Path, split: str) -> list[dict[str, str]]:
    with open(folder / "intents" / "examples.csv", newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def copy_tenant(root: Path) -> Path:
    shutil.copytree(CHECKOUT_TENANTS_DIR / TENANT, root / TENANT)
    return root


@pytest.fixture(scope="module")
def banking_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment's model: a small Banking77 one, as the classifier component test trains."""
    rows = [row for intent in BANKING_INTENTS
            for row in [r for r in banking77_rows() if r["category"] == intent][:BANKING_ROWS_PER_INTENT]]
    model = IntentModel.train([r["text"] for r in rows], [r["category"] for r in rows], encoder=load_encoder("minilm"))
    return model.save(tmp_path_factory.mktemp("banking-model"))


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory, banking_model_dir: Path) -> tuple[FleetSettings, dict]:
    """Settings naming a tenants folder holding retail and a models folder where retail's model was
    trained by the CLI's own path; returns them and the training report."""
    root = tmp_path_factory.mktemp("onboarding")
    settings = FleetSettings.from_env({}, tenants_dir=copy_tenant(root / "tenants"), intent_models_dir=root / "models",
                                 intent_model_dir=banking_model_dir, cache_dir=root / "cache")
    (root / "models").mkdir()
    source = classifier_cli.training_source(settings, data=None, tenant=TENANT, label_column=None, split=None, out=None)
    report = classifier_cli.train(source.data, "text", source.label_column, source.out, encoder="minilm",
                                  second_encoder="", split=source.split)
    return settings, report


@pytest.fixture(scope="module")
def triage(onboarded: tuple[FleetSettings, dict]) -> TicketTriage:
    return build_triage(onboarded[0])


def ticket(tenant: str, body: str, ticket_id: str = "t-1") -> tk.Ticket:
    return tk.Ticket(ticket_id=ticket_id, tenant_id=tenant, channel=tk.CHANNEL_API, body=body)


def test_the_tenant_model_is_trained_on_the_train_split_only(onboarded: tuple[FleetSettings, dict]) -> None:
    settings, report = onboarded
    folder = settings.tenant_data_dir / TENANT
    model = IntentModel.load(settings.intent_models_dir / TENANT, encoder=load_encoder("minilm"))

    assert report["out_dir"] == str(settings.intent_models_dir / TENANT)
    assert report["rows"] == len(examples(folder, "train"))
    assert report["source"]["split"] == "train" and report["source"]["label_column"] == "label"
    assert not model.seen_in_training([row["text"] for row in examples(folder, "heldout")]).any()


def test_retail_heldout_tickets_get_retail_intents_archetypes_and_policy(
    onboarded: tuple[FleetSettings, dict], triage: TicketTriage
) -> None:
    settings, report = onboarded
    folder = settings.tenant_data_dir / TENANT
    catalog = load_intent_catalog(folder / "intents" / "archetypes.yaml", folder / "intents" / "required_identifiers.yaml")
    heldout = examples(folder, "heldout")
    classified = [triage.classify(ticket(TENANT, row["text"], f"h-{i}"))[1] for i, row in enumerate(heldout)]

    assert len(heldout) == 112
    assert {c.intent for c in classified} <= set(catalog.archetypes)
    assert all(c.archetype == catalog.archetype(c.intent) for c in classified)
    assert {c.model_version for c in classified} == {report["version"]}
    accuracy = sum(c.intent == row["label"] for c, row in zip(classified, heldout)) / len(heldout)
    assert accuracy >= 0.75, accuracy  # MiniLM alone; see the benchmark for the deployed recipe

    assert triage.policies.path_for(TENANT) == folder / "routing_policy.yaml"
    assert triage.policies.current(TENANT).revision == load_policy(folder / "routing_policy.yaml").revision
    takeover = [c for c, row in zip(classified, heldout) if row["label"] == c.intent == "reset_two_factor"]
    assert takeover and all(c.route == tk.ROUTE_ESCALATE and "always-escalate intent reset_two_factor" in c.route_reason
                            for c in takeover)  # an intent only retail's policy names


def test_the_demo_bank_on_the_same_triage_keeps_the_deployment_model_catalog_and_policy(
    banking_model_dir: Path, triage: TicketTriage
) -> None:
    _, classification = triage.classify(ticket("demo-bank", "What exchange rate will I get for euros?"))

    assert classification.intent == "exchange_rate"
    assert classification.model_version == IntentModel.load(banking_model_dir, encoder=load_encoder("minilm")).version
    assert classification.archetype == default_catalog().archetype("exchange_rate")
    assert triage.policies.path_for("demo-bank") == DEFAULT_POLICY_PATH
    assert triage.policies.current("demo-bank").revision == load_policy(DEFAULT_POLICY_PATH).revision


def override(tenant: str, archetype: int, action: int, override_id: str) -> ev.RoutingOverride:
    return ev.RoutingOverride(meta=new_meta(tenant, "learner"), override_id=override_id, archetype=archetype,
                              action=action, reason="test", issued_by="learner:guardrail")


def test_overrides_reach_each_tenant_whichever_policy_file_it_follows(onboarded: tuple[FleetSettings, dict]) -> None:
    policies = build_triage(onboarded[0]).policies  # its own store: the overrides stay in this test
    apply = routing_override_handler(policies)
    account, faq = tk.ARCHETYPE_ACCOUNT_SPECIFIC, tk.ARCHETYPE_FAQ_BOUNDED

    apply(override(TENANT, account, ev.OVERRIDE_ACTION_KILL_SWITCH_ON, "retail-only"))
    apply(override("*", faq, ev.OVERRIDE_ACTION_KILL_SWITCH_ON, "everyone"))

    retail, bank = policies.current(TENANT), policies.current("demo-bank")
    assert retail.revision == load_policy(policies.path_for(TENANT)).revision  # still retail's own file
    assert retail.archetypes[account].kill_switch and "retail-only" in retail.archetypes[account].kill_switch_source
    assert not bank.archetypes[account].kill_switch
    assert retail.archetypes[faq].kill_switch and bank.archetypes[faq].kill_switch

    apply(override(TENANT, account, ev.OVERRIDE_ACTION_CLEAR, "retail-clear"))
    assert not policies.current(TENANT).archetypes[account].kill_switch


def test_a_tenant_without_a_model_keeps_its_catalog_and_policy(
    tmp_path: Path, banking_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = FleetSettings.from_env({}, tenants_dir=copy_tenant(tmp_path), intent_model_dir=banking_model_dir)
    with caplog.at_level(logging.WARNING, logger="services.classifier.main"):
        triage = build_triage(settings)
    _, classification = triage.classify(ticket(TENANT, "What exchange rate will I get for euros?"))

    # The deployment's model speaks another taxonomy than the tenant's catalog: said at start.
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"tenant {TENANT}: 3 of the intent model's 3 intents are not in the intent catalog "
        "(e.g. card_arrival, exchange_rate, lost_or_stolen_card): they get the default archetype and need no identifiers"
    ]

    assert classification.intent in BANKING_INTENTS  # the deployment's model: retail has none here
    assert classification.archetype == load_intent_catalog(
        tmp_path / TENANT / "intents" / "archetypes.yaml", tmp_path / TENANT / "intents" / "required_identifiers.yaml"
    ).default_archetype


@pytest.mark.parametrize(
    "break_it, error, names",
    [
        (lambda t, m: (t / TENANT / "intents" / "archetypes.yaml").write_text("default: unheard_of\n"),
         CatalogError, "archetypes.yaml"),
        (lambda t, m: (t / TENANT / "intents" / "required_identifiers.yaml").unlink(),
         CatalogError, "required_identifiers.yaml"),
        (lambda t, m: (t / TENANT / "routing_policy.yaml").write_text(yaml.safe_dump({"archetypes": {}})),
         PolicyError, "routing_policy.yaml"),
        (lambda t, m: (m / TENANT).mkdir(), SettingsError, f"models/{TENANT}"),
        (lambda t, m: ((m / TENANT).mkdir(), (m / TENANT / "model.json").write_text("{}")), SettingsError,
         f"models/{TENANT}"),
    ],
    ids=["bad-catalog", "half-a-catalog", "bad-policy", "empty-model-folder", "bad-model"],
)
def test_malformed_tenant_data_stops_the_start_naming_the_file(
    tmp_path: Path, banking_model_dir: Path, break_it, error: type[Exception], names: str
) -> None:
    tenants, models = copy_tenant(tmp_path / "tenants"), tmp_path / "models"
    models.mkdir()
    break_it(tenants, models)
    settings = FleetSettings.from_env({}, tenants_dir=tenants, intent_models_dir=models, intent_model_dir=banking_model_dir)

    with pytest.raises(error, match=names):
        build_triage(settings)


def test_training_options_name_one_csv_and_one_folder(onboarded: tuple[FleetSettings, dict]) -> None:
    settings = onboarded[0]
    for options, message in [
        (dict(data=None, tenant=None), "either --data"),
        (dict(data="x.csv", tenant=TENANT), "either --data"),
        (dict(data=None, tenant="nobody"), "has no"),
        (dict(data=None, tenant="../retail"), "not a tenant id"),
        (dict(data="x.csv", tenant=None), "--out is required"),
    ]:
        with pytest.raises(ValueError, match=message):
            classifier_cli.training_source(settings, label_column=None, split=None, out=None, **options)
    unset = settings.replace(intent_models_dir=None)
    with pytest.raises(ValueError, match="SUPPORTFLOW_INTENT_MODELS_DIR"):
        classifier_cli.training_source(unset, data=None, tenant=TENANT, label_column=None, split=None, out=None)
    given = classifier_cli.training_source(settings, data="b77.csv", tenant=None, label_column=None, split=None, out="o")
    assert (given.label_column, given.split) == ("category", None)
