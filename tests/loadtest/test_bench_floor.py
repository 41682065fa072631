"""The bench's raw-write floor hub (loadtest/floorhub.py) as a real subprocess on
loopback with real WebSocket clients, its hand-made handshake, and the bench's
min/median/max reduction of runs (pure)."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from loadtest import bench, bench_fanout, bench_sale, floorhub
from loadtest.bench_hubs import EVENT_SIZE, ProcessHub
from loadtest.stats import min_median_max

FLOOR_ARGV = [sys.executable, "-m", "loadtest.floorhub"]


async def _command(hub: ProcessHub, cmd: dict[str, Any]) -> dict[str, Any]:
    await hub.control.send(json.dumps(cmd))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(hub.control.recv(), 30))
    return reply


async def _events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        msg = await asyncio.wait_for(ws.recv(), 30)
        assert isinstance(msg, str)  # a text frame, decoded as UTF-8 by the client
        assert len(msg.encode()) <= EVENT_SIZE
        out.append(json.loads(msg))
    return out


async def _connect(hub: ProcessHub, viewers: list[ClientConnection], count: int) -> None:
    """`count` viewers on the hub, added to `viewers` as they connect (the caller
    closes them)."""
    for _ in range(count):
        viewers.append(await connect(hub.viewer_url, compression=None, ping_interval=None))


async def test_every_viewer_gets_each_event_exactly_once() -> None:
    hub = ProcessHub("floor", FLOOR_ARGV)
    await hub.start(None)
    viewers: list[ClientConnection] = []
    try:
        await _connect(hub, viewers, 6)
        k = 25
        reply = await _command(hub, {"rate": 100, "duration": k / 100, "size": EVENT_SIZE})
        assert reply == {"done": k, "clients": len(viewers), "state_bytes": 0}
        for ws in viewers:
            got = await _events(ws, k)
            assert [e["seq"] for e in got] == list(range(1, k + 1))
            assert all(e["type"] == "announcement" and isinstance(e["ts"], int) for e in got)
        # A fence: a second emit starts again at seq 1, and TCP keeps order, so a viewer
        # whose next frame is that one got nothing more from the first emit.
        assert (await hub.emit(100, 0.01)) == 1
        for ws in viewers:
            assert [e["seq"] for e in await _events(ws, 1)] == [1]

        # A close frame is answered with a close frame (1006 here if it were not), and
        # the viewer leaves the hub's list.
        for ws in viewers[:4]:
            await asyncio.wait_for(ws.close(), 30)
            assert ws.close_code == 1000
        polls = 0
        deadline = time.monotonic() + 30
        while True:
            reply = await _command(hub, {"rate": 1000, "duration": 0.001, "size": 100})
            polls += 1
            if reply["clients"] == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert reply == {"done": 1, "clients": 2, "state_bytes": 0}
        for ws in viewers[4:]:  # the viewers that stayed got every one of those events
            assert [e["seq"] for e in await _events(ws, polls)] == [1] * polls
    finally:
        for ws in viewers:
            await ws.close()
        await hub.stop()


async def test_a_bad_command_gets_a_reason_and_the_hub_goes_on() -> None:
    hub = ProcessHub("floor", FLOOR_ARGV)
    await hub.start(None)
    try:
        for cmd, field in (({"rate": -1, "duration": 1, "size": 200}, "rate"),
                           ({"rate": 5, "duration": "1", "size": 200}, "duration"),
                           ({"rate": 5, "duration": 1, "size": 200.5}, "size"),
                           ({"once": "yes", "size": 200}, "once"),
                           ({"once": True, "size": 0}, "size"),
                           ([1, 2], "JSON object")):
            reply = await _command(hub, cmd)  # type: ignore[arg-type]
            assert field in reply["error"]
        with pytest.raises(RuntimeError, match="refused"):
            await hub.emit(0, 1.0)
        assert await hub.emit(100, 0.02) == 2
    finally:
        await hub.stop()


async def test_events_sent_one_request_each_reach_every_viewer_in_order() -> None:
    """`--trigger request`: the bench sends each event's trigger at the rate (as it
    posts livesell's announcements) instead of one command for the whole run."""
    hub = ProcessHub("floor", FLOOR_ARGV, trigger="request")
    await hub.start(None)
    viewers: list[ClientConnection] = []
    try:
        await _connect(hub, viewers, 3)
        assert await hub.emit(200, 0.05) == 10
        for ws in viewers:
            got = await _events(ws, 10)
            assert [e["seq"] for e in got] == list(range(1, 11))
        assert await _command(hub, {"once": True, "size": 100}) == {
            "done": 1, "clients": 3, "state_bytes": 0}
        for ws in viewers:
            assert [e["seq"] for e in await _events(ws, 1)] == [11]
    finally:
        for ws in viewers:
            await ws.close()
        await hub.stop()


async def test_with_state_each_connection_holds_it_until_it_closes() -> None:
    """`--state BYTES`: every open connection (the viewers and the bench's control
    connection) holds that much memory, given back when it closes."""
    state = 5000  # three blocks: 2,000 + 2,000 + 1,000 bytes
    hub = ProcessHub("floor", [*FLOOR_ARGV, "--state", str(state)])
    await hub.start(None)
    viewers: list[ClientConnection] = []
    try:
        await _connect(hub, viewers, 4)
        reply = await _command(hub, {"once": True, "size": 100})
        assert reply == {"done": 1, "clients": 4, "state_bytes": 5 * state}
        for ws in viewers:
            assert [e["seq"] for e in await _events(ws, 1)] == [1]
        for ws in viewers[:3]:
            await asyncio.wait_for(ws.close(), 30)
        deadline = time.monotonic() + 30
        while (reply := await _command(hub, {"once": True, "size": 100}))["clients"] != 1:
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.05)
        assert reply["state_bytes"] == 2 * state
    finally:
        for ws in viewers:
            await ws.close()
        await hub.stop()


@pytest.mark.parametrize("value, says", [("-1", "between 0 and 65536"),
                                         ("65537", "between 0 and 65536"),
                                         ("16k", "whole number of bytes")])
def test_a_bad_state_size_is_refused_with_its_reason(value: str, says: str) -> None:
    done = subprocess.run([*FLOOR_ARGV, "--state", value], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert says in done.stderr
    with pytest.raises(SystemExit):
        bench_args(["--floor-state", value])


def test_the_bench_starts_the_floor_with_the_state_it_was_given() -> None:
    args = bench_args(["--floor-state", "16000", "--hubs", "floor"])
    assert args.floor_state == 16000
    hub = bench_fanout._make_hub("floor", args, None, "")
    assert isinstance(hub, ProcessHub)
    assert hub.argv[-2:] == ["--state", "16000"]
    bare = bench_fanout._make_hub("floor", bench_args([]), None, "")
    assert isinstance(bare, ProcessHub) and "--state" not in bare.argv


def bench_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def floor_port() -> Iterator[int]:
    proc = subprocess.Popen(FLOOR_ARGV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _exchange(port: int, request: bytes) -> bytes:
    """Send `request`, read until the hub closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


UPGRADE = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def _request(line: str = "GET / HTTP/1.1", **changes: str | None) -> bytes:
    headers = {**UPGRADE, **{k.replace("_", "-"): v for k, v in changes.items()}}
    return (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()
                                     if v is not None) + "\r\n").encode()


@pytest.mark.parametrize(("request_bytes", "reason"), [
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"Upgrade: websocket"),
    (_request(Upgrade="h2c"), b"Upgrade: websocket"),
    (_request(Connection="keep-alive"), b"Connection: Upgrade"),
    (_request("POST / HTTP/1.1"), b"only GET"),
    (_request("GET / HTTP/1.0"), b"HTTP/1.1"),
    (_request(Sec_WebSocket_Version="8"), b"Version: 13"),
    (_request(Sec_WebSocket_Key=None), b"Key"),
    (_request(Sec_WebSocket_Key="c2hvcnQ="), b"Key"),  # 5 bytes, not 16
    (_request("GET /elsewhere HTTP/1.1"), b"/elsewhere"),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * 9000, b"over 8192 bytes"),
])
def test_the_handshake_refuses_what_is_not_an_upgrade(floor_port: int, request_bytes: bytes,
                                                      reason: bytes) -> None:
    answer = _exchange(floor_port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert reason in body


def test_the_handshake_accepts_an_upgrade(floor_port: int) -> None:
    with socket.create_connection(("127.0.0.1", floor_port), timeout=30) as sock:
        sock.sendall(_request(Connection="keep-alive, Upgrade"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        head = answer.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head[0] == b"HTTP/1.1 101 Switching Protocols"
        # RFC 6455 section 1.3's example key and answer.
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        sock.sendall(bytes((0x88, 0x82)) + b"mask" + bytes(a ^ b for a, b in
                                                            zip(b"\x03\xe8", b"ma",
                                                                strict=True)))
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest == floorhub.CLOSE_FRAME  # answered, then closed


def test_accept_key_and_frames() -> None:
    assert floorhub.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert floorhub.text_frame(b"hi") == b"\x81\x02hi"
    assert floorhub.text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"


def test_min_median_max() -> None:
    assert min_median_max([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert min_median_max([4, None, 1, 2, 3]) == {"min": 1, "median": 2.5, "max": 4}
    assert min_median_max([1.23456, 1.0], digits=2) == {"min": 1.0, "median": 1.12,
                                                        "max": 1.23}
    assert min_median_max([None, None]) is None
    assert min_median_max([]) is None


def _fanout_row(hub: str, run: int, cpu: float | None, p99: float,
                deliveries: int) -> dict[str, Any]:
    return {"hub": hub, "viewers": 100, "rate": 5, "run": run, "events": 10,
            "deliveries": deliveries, "expected": 1000, "cpu_us_per_delivery": cpu,
            "p50_ms": p99 / 2, "p99_ms": p99, "redis_cpu_s": 0.0, "generator_util": 0.1}


def test_fanout_cells_give_min_median_max_and_the_floor_ratio() -> None:
    rows = [_fanout_row("livesell", 0, 12.0, 30.0, 1000),
            _fanout_row("livesell", 1, 9.0, 10.0, 900),
            _fanout_row("livesell", 2, 10.0, 20.0, 1000),
            _fanout_row("floor", 0, 5.0, 8.0, 1000),
            _fanout_row("floor", 1, 4.0, 9.0, 1000),
            _fanout_row("floor", 2, None, 10.0, 1000)]
    cells = {m["hub"]: m for m in bench_fanout.medians(rows)}
    ls, fl = cells["livesell"], cells["floor"]
    assert ls["spread"]["cpu_us_per_delivery"] == {"min": 9.0, "median": 10.0, "max": 12.0}
    assert ls["spread"]["p99_ms"] == {"min": 10.0, "median": 20.0, "max": 30.0}
    assert ls["spread"]["reach"] == {"min": 0.9, "median": 1.0, "max": 1.0}
    # The existing keys keep the medians (and reach of all runs together).
    assert (ls["cpu_us_per_delivery"], ls["p99_ms"], ls["reach"]) == (10.0, 20.0, 0.9667)
    # A run without the figure is left out of its spread.
    assert fl["spread"]["cpu_us_per_delivery"] == {"min": 4.0, "median": 4.5, "max": 5.0}
    assert ls["cpu_ratio_to_floor"] == round(10.0 / 4.5, 2)
    assert ls["p99_ratio_to_floor"] == round(20.0 / 9.0, 2)
    assert "cpu_ratio_to_node" not in ls  # no Node cell in this run
    assert not any("ratio" in k for k in fl)
    assert bench.spread_text(ls, "cpu_us_per_delivery") == "10 [9..12]"
    assert bench.spread_text(ls, "nothing") == "None"


def test_sale_medians_give_min_median_max() -> None:
    def run(buys: float, cpu: float | None, p99: float) -> dict[str, Any]:
        return {"buyers": 10, "units": 2, "time_to_all_reserved_s": 0.1,
                "time_to_sell_out_s": None, "last_buy_reply_s": 10 / buys,
                "buys_per_s": buys, "buy_ms": {"p50": 1.0, "p99": p99}, "units_sold": 2,
                "checks_ok": True, "server_cpu_us_per_buy": cpu, "redis_cpu_us_per_buy": 1.0}

    m = bench_sale.sale_medians([run(100, 60.0, 30), run(300, None, 10), run(200, 80.0, 20)])
    assert m["spread"]["buys_per_s"] == {"min": 100, "median": 200, "max": 300}
    assert m["spread"]["server_cpu_us_per_buy"] == {"min": 60, "median": 70, "max": 80}
    assert m["spread"]["buy_p99_ms"] == {"min": 10, "median": 20, "max": 30}
    assert m["spread"]["time_to_sell_out_s"] is None
    assert (m["buys_per_s"], m["server_cpu_us_per_buy"], m["buy_p99_ms"]) == (200, 70, 20)


def test_a_reference_keeps_its_median_run_and_gives_the_spread() -> None:
    runs = [{"calls_per_s": 300.0, "client_cpu_us_per_call": 10.0, "mode": "m"},
            {"calls_per_s": 100.0, "client_cpu_us_per_call": 30.0, "mode": "m"},
            {"calls_per_s": 200.0, "client_cpu_us_per_call": 25.0, "mode": "m"}]
    m = bench_sale.median_run(runs, ("calls_per_s", "client_cpu_us_per_call"))
    # The median run by calls/s, whole: its figures come from one run.
    assert (m["calls_per_s"], m["client_cpu_us_per_call"]) == (200.0, 25.0)
    assert m["runs_calls_per_s"] == [100.0, 200.0, 300.0]
    assert m["spread"]["client_cpu_us_per_call"] == {"min": 10, "median": 25, "max": 30}
