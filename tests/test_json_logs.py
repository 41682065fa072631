"""server.log_format = "json": a served livesell (one process, and --workers 2)
writes one JSON object per line, uvicorn's lines included, and a record made
while serving a room's request names the room."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from server.state.redis_probe import free_port
from tests.support import eventually
from tests.test_supervision import serving


@pytest.mark.parametrize("workers", [1, 2])
async def test_every_log_line_is_a_json_object_naming_its_room(tmp_path: Path,
                                                               workers: int) -> None:
    config = tmp_path / "json.toml"
    config.write_text('[server]\nlog_format = "json"\n')
    port = free_port() if workers > 1 else 0
    with serving(tmp_path, tmp_path / "data", "--config", str(config), "--workers",
                 str(workers), port=port) as served:
        served.wait_serving()
        async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
            # Scheduled an hour ahead, so that going live is the host's doing.
            r = await http.post("/api/rooms", json={
                "title": "Logged", "starts_at": int(time.time() * 1000) + 3_600_000})
            assert r.status_code == 201, r.text
            room_id = r.json()["room"]["room_id"]
            host_key = r.json()["host_key"]
            # Going live logs "room ... is live" from inside the host's request.
            live = await http.post(f"/api/rooms/{room_id}/live",
                                   headers={"X-Host-Key": host_key})
            assert live.status_code == 200, live.text

            async def logged() -> list[dict[str, object]] | None:
                lines = [ln for ln in served.stderr.splitlines() if ln.strip()]
                records = [json.loads(ln) for ln in lines]
                return records if any(r.get("room_id") == room_id and "is live" in
                                       str(r["message"]) for r in records) else None
            records = await eventually(logged)
        assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
        assert any(str(r["logger"]).startswith("uvicorn") for r in records)
