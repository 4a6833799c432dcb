"""One lane per (tenant, provider): each tenant's helpdesk gets its own bounded share of the
calls, and a helpdesk that stops answering stops being called for a while.

The consumer hands every ticket of a batch to its own thread, so the tickets of one lane wait for
that lane only. A lane runs at most `per_lane` deliveries at once. When a delivery runs out of
retries (ProviderUnavailable), the lane opens for `cooldown_s`: its next deliveries fail at once,
as unavailable, instead of each spending its retry budget while its batch waits to be committed.
First attempts and retries have lanes of their own (main.py): a first attempt turned away goes to
the retry topic, a retry turned away is recorded FAILED and dead-lettered. The first delivery
after the cool-down tries the provider again; a success closes the lane.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from services.delivery import metrics
from services.delivery.providers.base import ProviderUnavailable

T = TypeVar("T")
Lane = tuple[str, str]  # (tenant, provider)


@dataclass
class _LaneState:
    slots: threading.Semaphore
    open_until: float = 0.0
    reason: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class ProviderLanes:
    def __init__(self, per_lane: int, cooldown_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_lane = max(1, per_lane)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lanes: dict[Lane, _LaneState] = {}
        self._lock = threading.Lock()

    def _state(self, lane: Lane) -> _LaneState:
        with self._lock:
            state = self._lanes.get(lane)
            if state is None:
                state = self._lanes[lane] = _LaneState(threading.Semaphore(self._per_lane))
            return state

    def is_open(self, lane: Lane) -> bool:
        return self._state(lane).open_until > self._clock()

    def run(self, lane: Lane, delivery: Callable[[], T]) -> T:
        state = self._state(lane)
        self._refuse_if_open(lane, state)
        with state.slots:
            self._refuse_if_open(lane, state)  # it may have opened while this one waited
            try:
                result = delivery()
            except ProviderUnavailable as exc:
                with state.lock:
                    if state.open_until <= self._clock():
                        metrics.CIRCUIT_OPENED.labels(metrics.provider_label(lane[1])).inc()
                    state.open_until = self._clock() + self._cooldown_s
                    state.reason = exc.detail
                raise
            with state.lock:
                state.open_until = 0.0
            return result

    def _refuse_if_open(self, lane: Lane, state: _LaneState) -> None:
        with state.lock:
            remaining = state.open_until - self._clock()
            reason = state.reason
        if remaining > 0:
            raise ProviderUnavailable(lane[1], f"not called for {remaining:.0f}s more after repeated failures "
                                      f"({reason[:200]})", 0)
