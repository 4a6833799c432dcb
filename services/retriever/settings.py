"""The retriever's settings: where Weaviate is."""

from __future__ import annotations

from encoders.settings import EncoderSettings


class RetrieverSettings(EncoderSettings):
    # The defaults point at the server that `supportflow dev up` starts.
    weaviate_http_host: str = "127.0.0.1"
    weaviate_http_port: int = 18080
    weaviate_grpc_port: int = 18051
    weaviate_api_key: str = ""

    @property
    def weaviate_http_url(self) -> str:
        return f"http://{self.weaviate_http_host}:{self.weaviate_http_port}"
