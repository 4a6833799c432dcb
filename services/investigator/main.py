"""Investigator: gRPC `Investigate` (a tenant's playbook run against its systems of record for one
ticket) and `RunAction` (a confirmed, allow-listed action through the account system). No topics:
the drafter and the escalator call it, and it calls out to the tenants' systems only.

The systems file (`SUPPORTFLOW_SYSTEMS_PATH`, supportflow/systems.py) and the playbooks
(`<tenants_dir>/<tenant>/playbooks/`) are read here; a systems file that cannot be used stops the
start, loudly, rather than serve empty investigations."""

from __future__ import annotations

from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.eventbus import EventPublisher
from supportflow.observability import Health
from supportflow.service import ServiceParts

from services.investigator.handlers import Investigator
from services.investigator.servicer import InvestigatorServicer
from services.investigator.settings import InvestigatorSettings


def build_investigator(settings: InvestigatorSettings) -> Investigator:
    return Investigator(settings.systems(), settings.tenant_data_dir, deadline_s=settings.investigation_deadline_s)


def build(settings: InvestigatorSettings, publisher: EventPublisher, health: Health) -> ServiceParts:
    investigator = build_investigator(settings)
    return ServiceParts(
        grpc=[(services_pb2_grpc.add_InvestigatorServicer_to_server, InvestigatorServicer(investigator),
               "supportflow.contracts.v1.Investigator")],
        on_stop=[investigator.close],
    )


if __name__ == "__main__":
    from supportflow.service import main

    main("investigator", InvestigatorSettings)
