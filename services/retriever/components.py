"""The retriever's parts, built once from settings: shared by the service, the CLI and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass


from encoders.embedding import load_encoder

from services.retriever.articles import TenantKnowledgePolicies
from services.retriever.index import (
    CASES_COLLECTION,
    KB_COLLECTION,
    CaseIndex,
    KnowledgeIndex,
    WeaviateAddress,
    WeaviateConnection,
)
from services.retriever.search import Searcher, TextEncoder
from services.retriever.settings import RetrieverSettings

# Where tenants' knowledge.yaml files are read when SUPPORTFLOW_TENANTS_DIR is unset (as the
# investigator reads its playbooks); a tenant without the file has KnowledgePolicy's defaults.


@dataclass
class RetrieverComponents:
    connection: WeaviateConnection
    encoder: TextEncoder
    knowledge: KnowledgeIndex
    cases: CaseIndex
    searcher: Searcher

    def close(self) -> None:
        self.connection.close()


def build_components(
    settings: RetrieverSettings,
    *,
    encoder: TextEncoder | None = None,
    kb_collection: str = KB_COLLECTION,
    cases_collection: str = CASES_COLLECTION,
    query_timeout_s: float = 1.0,
) -> RetrieverComponents:
    """Nothing connects here: the Weaviate client is created on first use (and again after a failure)."""
    encoder = encoder or load_encoder(settings.embedding_model)
    connection = WeaviateConnection(WeaviateAddress.from_settings(settings), query_timeout_s=query_timeout_s)
    knowledge = KnowledgeIndex(connection, encoder, collection=kb_collection)
    return RetrieverComponents(
        connection=connection,
        encoder=encoder,
        knowledge=knowledge,
        cases=CaseIndex(connection, encoder, collection=cases_collection),
        searcher=Searcher(knowledge, encoder, knowledge_policy=TenantKnowledgePolicies(settings.tenant_data_dir)),
    )
