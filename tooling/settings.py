"""The settings of the tools that run the whole system on one machine (the demo, the dev stack,
the tests' fleets, the CLI): every service's settings at once, so one environment configures a
fleet and each service started from it reads its own part (`SERVICE_SETTINGS`), plus what only
the tools read (the local stack's ports, the encoders new intent models train on)."""

from __future__ import annotations

from services.classifier.settings import ClassifierSettings
from services.delivery.settings import DeliverySettings
from services.drafter.settings import DrafterSettings
from services.escalator.settings import EscalatorSettings
from services.gateway.settings import GatewaySettings
from services.investigator.settings import InvestigatorSettings
from services.learner.settings import LearnerSettings
from services.retriever.settings import RetrieverSettings
from services.workspace.settings import WorkspaceSettings
from supportflow.settings import Settings
from tooling.sample_data import SAMPLE_CRM_PATH

# The class each service's process reads its settings with (`python -m services.<name>.main`).
SERVICE_SETTINGS: dict[str, type[Settings]] = {
    "gateway": GatewaySettings,
    "classifier": ClassifierSettings,
    "retriever": RetrieverSettings,
    "drafter": DrafterSettings,
    "escalator": EscalatorSettings,
    "learner": LearnerSettings,
    "delivery": DeliverySettings,
    "workspace": WorkspaceSettings,
    "investigator": InvestigatorSettings,
}


class FleetSettings(ClassifierSettings, RetrieverSettings, DrafterSettings, EscalatorSettings, LearnerSettings,
                    InvestigatorSettings, GatewaySettings, DeliverySettings, WorkspaceSettings):
    # The local dev stack's other ports (`supportflow dev up`, the test fixtures).
    kafka_controller_port: int = 19093
    weaviate_gossip_port: int = 17946
    weaviate_data_port: int = 17947
    weaviate_raft_port: int = 18300
    weaviate_raft_internal_rpc_port: int = 18301
    # What new intent models train on (`supportflow classifier train`; a model keeps its own): the
    # first encoder, and the one consulted for the tickets the first leaves unsure (empty: none;
    # services/classifier/intent_model.py).
    intent_encoder: str = "minilm+layer3"
    intent_second_encoder: str = "bge-small"
    # The demo's synthetic customers, unless a CRM is named (a deployment's services know none).
    crm_location: str = str(SAMPLE_CRM_PATH)
