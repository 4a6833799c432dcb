"""The gRPC bootstrap shared by every service: server with health, reflection, latency and error
interceptors and graceful shutdown; client channels on which every call has a deadline."""

from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from supportflow.observability import GRPC_CLIENT_SECONDS, GRPC_SERVER_SECONDS, Health

log = logging.getLogger(__name__)

Registration = tuple[Callable[[Any, grpc.Server], None], Any, str]
"""(add_XServicer_to_server, servicer instance, full service name for health and reflection)"""


class _ServerMetricsInterceptor(grpc.ServerInterceptor):
    """Records latency and status code of every unary call, and logs unexpected exceptions."""

    def __init__(self, service: str) -> None:
        self._service = service

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        def timed(request, context):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            code = "OK"
            try:
                return inner(request, context)
            except Exception:
                code = context.code().name if context.code() else "UNKNOWN"
                if code == "UNKNOWN":
                    log.exception("unhandled error in %s", method)
                raise
            finally:
                if context.code() not in (None, grpc.StatusCode.OK):
                    code = context.code().name
                GRPC_SERVER_SECONDS.labels(self._service, method, code).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def create_server(
    service: str,
    registrations: Iterable[Registration],
    health_state: Health,
    port: int,
    *,
    host: str = "0.0.0.0",
    max_workers: int = 8,
) -> tuple[grpc.Server, int]:
    """Build (not start) a server; returns it with the bound port (port 0 picks a free one)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{service}-grpc"),
        interceptors=[_ServerMetricsInterceptor(service)],
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
    health_servicer = health.HealthServicer()
    registrations = list(registrations)
    for add, servicer, full_name in registrations:
        add(servicer, server)
        names.append(full_name)

    def publish_health(ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        health_servicer.set("", status)
        for _, _, full_name in registrations:
            health_servicer.set(full_name, status)

    health_state.on_change(publish_health)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(names, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"{service}: cannot bind gRPC port {port}")
    return server, bound


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, timeout: float | None) -> None:
        self.method = details.method
        self.timeout = timeout
        self.metadata = details.metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _DeadlineAndMetricsInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Gives calls without a deadline the default one, and records client latency by status."""

    def __init__(self, service: str, default_timeout_s: float) -> None:
        self._service = service
        self._timeout = default_timeout_s

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        timeout = client_call_details.timeout if client_call_details.timeout is not None else self._timeout
        method = client_call_details.method.rsplit("/", 1)[-1]
        started = time.perf_counter()
        outcome = continuation(_CallDetails(client_call_details, timeout), request)
        code = outcome.code().name if outcome.code() else "OK"
        GRPC_CLIENT_SECONDS.labels(self._service, method, code).observe(time.perf_counter() - started)
        return outcome


def open_channel(service: str, address: str, default_timeout_s: float) -> grpc.Channel:
    """A channel to `address` whose every unary call has a deadline (the caller's, or the default)."""
    return grpc.intercept_channel(
        grpc.insecure_channel(address), _DeadlineAndMetricsInterceptor(service, default_timeout_s)
    )
