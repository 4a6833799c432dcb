"""The sentence encoders and what they need (floor 2, a library): all-MiniLM-L6-v2 on ONNX Runtime
and its registry (`embedding.py`), bge-small-en-v1.5 and fetching it (`bge.py`). Imports only the
platform (`supportflow/`); the classifier, the retriever and the drafter load their models here."""
