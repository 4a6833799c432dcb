"""Ports for servers a fleet or a test starts (tooling/fleet.py)."""

from __future__ import annotations

import socket

from tooling import fleet


def test_free_ports_lie_below_the_ephemeral_range_and_can_be_bound() -> None:
    low = fleet._ephemeral_low()
    ports = {fleet.free_port() for _ in range(20)}
    assert len(ports) > 1  # drawn, not one fixed port
    for port in ports:
        assert port < low
        with socket.socket() as server:
            server.bind(("", port))


def test_the_ephemeral_range_falls_back_to_linux_s_default(tmp_path) -> None:
    assert fleet._ephemeral_low(str(tmp_path / "missing")) == 32768
    weird = tmp_path / "range"
    weird.write_text("40000\t60999\n")
    assert fleet._ephemeral_low(str(weird)) == 40000
