"""The investigator's `RunAction` over gRPC, as the action gate's executor: the one way a confirmed
action reaches the tenant's account system (through the investigator's connector layer, with its
deadlines, retries and circuit breaker). The attempt's action id is the idempotency key. A call
that fails raises: the gate records the attempt REFUSED with the failure, and nothing claims it ran.
"""

from __future__ import annotations

import grpc

from supportflow.contracts.v1 import services_pb2 as svc
from supportflow.contracts.v1 import services_pb2_grpc
from supportflow.investigation import CALL_MARGIN_S

from services.escalator.actions import ActionRequest, ExecutionResult, Executor


def run_action_executor(channel: grpc.Channel, deadline_s: float) -> Executor:
    stub = services_pb2_grpc.InvestigatorStub(channel)

    def run(request: ActionRequest, action_id: str) -> ExecutionResult:
        response = stub.RunAction(
            svc.RunActionRequest(
                tenant_id=request.tenant_id, action_id=action_id, tool=request.tool,
                customer_id=request.customer_id, params=dict(request.params), ticket_id=request.ticket_id,
            ),
            timeout=deadline_s + CALL_MARGIN_S,
        )
        return ExecutionResult(response.executed, response.status, response.reference, response.reason,
                               dict(response.result))

    return run
