"""The hybrid request the knowledge and case searches send Weaviate (services/retriever/index.py
`_hybrid`); the searches themselves run against Weaviate in tests/component/test_retriever_index.py."""

from __future__ import annotations

import numpy as np
import pytest
from weaviate.proto.v1 import base_search_pb2

from services.retriever.index import _hybrid

VECTOR = np.array([0.6, 0.8], dtype=np.float32)


def test_hybrid_fuses_by_relative_score_unless_told_otherwise():
    request = _hybrid("card lost", ["title", "text"], VECTOR, 0.7)
    assert request.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RELATIVE_SCORE
    assert request == _hybrid("card lost", ["title", "text"], VECTOR, 0.7, fusion="relative")
    assert (request.query, list(request.properties), request.use_alpha_param) == ("card lost", ["title", "text"], True)
    assert request.alpha_param == pytest.approx(0.7)
    assert np.frombuffer(request.vector_bytes, dtype="<f4").tolist() == pytest.approx([0.6, 0.8])


def test_ranked_fusion_sends_reciprocal_rank_fusion_and_changes_nothing_else():
    relative = _hybrid("card lost", ["text"], VECTOR, 0.5)
    ranked = _hybrid("card lost", ["text"], VECTOR, 0.5, fusion="ranked")
    assert ranked.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RANKED
    ranked.fusion_type = relative.fusion_type
    assert ranked == relative


def test_an_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="fusion"):
        _hybrid("card lost", ["text"], VECTOR, 0.5, fusion="rrf")
