"""Bad input to `livesell-loadtest` exits with 2 and names the key, the flag, the
trace line or the address; nothing is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.scenario import (
    ScenarioError,
    build_scenario,
    bundled_names,
    load_scenario_file,
    resolve,
    with_overrides,
)
from loadtest.trace import TraceError, parse_trace


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtest", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize(("toml", "phrases"), [
    ("[sale]\nunitz = 5\n", ["bad.toml", "unknown key sale.unitz"]),
    ("[sale]\nunits = 'lots'\n", ["sale.units", "expected an integer", "'lots'"]),
    ("[viewers]\ncount = 0\n", ["viewers.count", "below the minimum 1"]),
    ("[sale]\nbuyer_share = 1.5\n", ["sale.buyer_share", "above the maximum 1.0"]),
    ("[sale]\nabandon = 'never'\n", ["sale.abandon", "'never' is not one of"]),
    ("[host]\nactions = ['dance']\n", ["host.actions", "'dance'"]),
    ("[party]\nsize = 3\n", ["unknown key 'party'"]),
    ("sale = 3\n", ["[sale] must be a table"]),
    ("[sale]\nenabled = true\nunits = 5\nlimit_per_buyer = 1\nquantity = 2\n",
     ["sale.quantity", "above sale.limit_per_buyer 1"]),
    ("[run]\nduration_s = 2\n[sale]\nenabled = true\ncountdown_s = 3\n",
     ["run.duration_s", "leaves no time to sell"]),
    ("[sale\n", ["not valid TOML"]),
    ("[sale]\nwaitlist_share = 2\n", ["sale.waitlist_share", "above the maximum 1.0"]),
    ("[auction]\nanti_snipe = 'never'\n", ["auction.anti_snipe", "'never' is not one of",
                                          "extend, sudden_death"]),
    ("[auction]\nstart_price = 'cheap'\n", ["auction.start_price", "expected an integer"]),
    ("[auction]\nextend_s = 0\n", ["auction.extend_s", "below the minimum 1"]),
    ("[auction]\nduration_s = 3\n", ["auction.duration_s", "below the minimum 5"]),
    ("[auction]\nbidders = 200000\n", ["auction.bidders", "above the maximum 100000"]),
    ("[auction]\nsnipes = 1.5\n", ["auction.snipes", "expected an integer, got 1.5"]),
    ("[auction]\nenabled = 'yes'\n", ["auction.enabled", "expected true or false"]),
    ("[auction]\nenabled = true\nbidders = 500\n",
     ["auction.bidders: 500 is above viewers.count 200"]),
    ("[auction]\nenabled = true\nbidders = 10\nreserve_price = 10\n",
     ["auction.reserve_price: 10 is below auction.start_price 1000"]),
    ("[run]\nduration_s = 10\n[auction]\nenabled = true\nbidders = 10\nduration_s = 20\n",
     ["run.duration_s: 10.0 leaves no time for the auction", "auction.duration_s is 20"]),
    ("[auction]\nenabled = true\nbidders = 10\nduration_s = 5\nsnipe_window_s = 5.0\n",
     ["auction.snipe_window_s: 5.0 is not inside auction.duration_s 5"]),
    ("[group_buy]\ngroup_size = 1\n", ["group_buy.group_size", "below the minimum 2"]),
    ("[group_buy]\nfill_s = 5\n", ["group_buy.fill_s", "below the minimum 10"]),
    ("[group_buy]\ngroup_price = 'half'\n", ["group_buy.group_price", "expected an integer"]),
    ("[group_buy]\nstart_share = 2\n", ["group_buy.start_share", "above the maximum 1.0"]),
    ("[group_buy]\nenabled = true\nparticipants = 500\n",
     ["group_buy.participants: 500 is above viewers.count 200"]),
    ("[group_buy]\nenabled = true\nparticipants = 10\ngroup_size = 5\nunits = 4\n",
     ["group_buy.units: 4 is below group_buy.group_size 5"]),
    ("[run]\nduration_s = 5\n[group_buy]\nenabled = true\nparticipants = 10\n"
     "act_within_s = 6\n", ["group_buy.act_within_s: 6.0 is not inside run.duration_s 5.0"]),
    ("[poll]\noptions = 'Red'\n", ["poll.options", "expected an array of strings"]),
    ("[poll]\nenabled = true\noptions = ['Red']\n", ["poll.options: expected 2..6 options"]),
    ("[poll]\nenabled = true\noptions = ['Red', 'red']\n",
     ["poll.options", "are not distinct (case-insensitively)"]),
    ("[poll]\nenabled = true\nquestion = ''\n", ["poll.question: expected 1..200"]),
    ("[poll]\nduration_s = 2\n", ["poll.duration_s", "below the minimum 5"]),
    ("[poll]\nenabled = true\nduration_s = 5\nvote_within_s = 5\n",
     ["poll.vote_within_s: 5.0 is not inside poll.duration_s 5"]),
])
def test_bad_scenario_files_exit_2_naming_the_key(tmp_path: Path, toml: str,
                                                  phrases: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    out = _run("run", str(path), "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    for phrase in phrases:
        assert phrase in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "phrases"), [
    (["--viewers", "0"], ["--viewers", "not a positive integer"]),
    (["--viewers", "many"], ["--viewers", "'many' is not an integer"]),
    (["--viewers", "200000"], ["--viewers (viewers.count)", "above the maximum 100000"]),
    (["--duration", "-3"], ["--duration"]),
    (["--speed", "2"], ["--speed", "recorded trace only"]),
    (["--url", "http://127.0.0.1:1"], ["cannot reach the server at http://127.0.0.1:1"]),
    (["--url", "http://192.0.2.1:8000"], ["192.0.2.1 is not a loopback address"]),
    (["--url", "ftp://127.0.0.1"], ["--url", "expected http://HOST:PORT"]),
    (["--url", "http://127.0.0.1:1", "--spawn"], ["not allowed with argument"]),
    (["--server-processes", "0"], ["--server-processes", "not a positive integer"]),
    (["--server-processes", "65"], ["--server-processes", "more than 64"]),
    (["--server-processes", "2", "--url", "http://127.0.0.1:1"],
     ["--server-processes: only with a spawned server"]),
    (["--chaos", ""], ["--chaos: SPEC is empty"]),
    (["--chaos", "kill-db@3"], ["--chaos item 1 'kill-db@3'", "unknown fault 'kill-db'"]),
    (["--chaos", "kill-redis@-1"], ["T '-1' is negative"]),
    (["--chaos", "kill-redis@soon"], ["T 'soon' is not a time in seconds"]),
    (["--chaos", "kill-redis"], ["expected kill-redis@T"]),
    (["--chaos", "sigterm@3,stall-store@4"], ["item 2", "stall-store needs a DURATION"]),
    (["--chaos", "stall-store@4:0"], ["DURATION must be above 0"]),
    (["--chaos", "kill-redis@4:2"], ["kill-redis takes no DURATION"]),
    (["--chaos", "kill-redis@20.5"],
     ["--chaos kill-redis@20.5: T 20.5 s is beyond the run's length (run.duration_s 20 s)"]),
    (["--chaos", "kill-redis@40", "--duration", "30"], ["(run.duration_s 30 s)"]),
    (["--chaos", "kill-worker@5", "--server-processes", "1"],
     ["kill-worker needs several server processes", "this run has 1"]),
    (["--chaos", "kill-redis@5", "--url", "http://127.0.0.1:1"],
     ["--chaos: faults go only into a server the load tester spawned", "not into a server "
      "given by --url"]),
    (["--servers", "0"], ["--servers", "not a positive integer"]),
    (["--servers", "9"], ["--servers", "9 is more than 8", "127.0.0.8"]),
    (["--servers", "three"], ["--servers", "'three' is not an integer"]),
    (["--servers", "2", "--url", "http://127.0.0.1:1"],
     ["--servers: only with spawned servers, not --url"]),
    (["--servers", "2", "--server-processes", "2"],
     ["--servers: each server behind the balancer is one process"]),
    (["--chaos", "kill-server@5"],
     ["--chaos kill-server@5: kill-server needs several servers behind the balancer",
      "this run has one server and no balancer"]),
    (["--chaos", "kill-server@5", "--servers", "1"], ["--servers 2 or more", "this run has 1"]),
    (["--chaos", "kill-server@5:1", "--servers", "2"], ["kill-server takes no DURATION"]),
    (["--chaos", "kill-server@25", "--servers", "2"], ["T 25 s is beyond the run's length"]),
    (["--chaos", "kill-redis@5", "--servers", "2"],
     ["--chaos kill-redis@5: kill-redis acts on a single spawned server",
      "with --servers only kill-server runs"]),
])
def test_bad_flags_exit_2_naming_the_flag_or_address(tmp_path: Path, args: list[str],
                                                     phrases: list[str]) -> None:
    out = _run("run", "flash_sale", "--quiet", "--report-dir", str(tmp_path / "r"), *args,
               cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    for phrase in phrases:
        assert phrase in out.stderr, out.stderr


def test_chaos_past_the_end_of_a_trace_exits_2(tmp_path: Path) -> None:
    out = _run("run", "sample", "--speed", "2", "--chaos", "sigterm@3000", cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "sigterm@3000: T 3000 s is beyond the run's length (the trace at --speed" \
        in out.stderr


def test_unknown_scenario_name_lists_the_bundled_ones(tmp_path: Path) -> None:
    out = _run("run", "flash_sail", cwd=tmp_path)
    assert out.returncode == 2
    assert "flash_sail" in out.stderr and "flash_sale" in out.stderr


def test_bad_trace_lines_exit_2_naming_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"kind": "livesell-trace", "version": 1, "room_id": "r", '
                    '"started_at": 1}\n'
                    '{"t": 5, "actor": "viewer", "viewer": "v1", "action": "fly"}\n')
    out = _run("run", str(path), cwd=tmp_path)
    assert out.returncode == 2
    assert "t.jsonl line 2: action: 'fly' is not a viewer action" in out.stderr


@pytest.mark.parametrize(("text", "phrase"), [
    ("", "empty trace"),
    ('{"kind": "other", "version": 1}', "line 1: kind"),
    ('{"kind": "livesell-trace", "version": 3, "room_id": "r", "started_at": 1}',
     "line 1: version"),
    ('{"kind": "livesell-trace", "version": 1, "room_id": "r", "started_at": 1}\n'
     '{"t": -1, "actor": "host", "action": "announce", "data": {"text": "x"}}', "t: expected"),
    ('{"kind": "livesell-trace", "version": 1, "room_id": "r", "started_at": 1}\n'
     '{"t": 1, "actor": "host", "action": "pin", "data": {}}', "data.product_id: required"),
    ('{"kind": "livesell-trace", "version": 1, "room_id": "r", "started_at": 1}\n'
     '{"t": 1, "actor": "viewer", "action": "buy", "data": {"product_id": "p"}}',
     "line 2: viewer: expected"),
    ('{"kind": "livesell-trace", "version": 1, "room_id": "r", "started_at": 1}\n'
     '{"t": 1, "actor": "crowd", "action": "buy"}', "actor: expected"),
    ('{"kind": "livesell-trace", "version": 1, "room_id": "r", "started_at": 1}\n'
     'not json', "line 2: not valid JSON"),
])
def test_trace_parser_names_the_fault(text: str, phrase: str) -> None:
    with pytest.raises(TraceError) as err:
        parse_trace(text, "x.jsonl")
    assert phrase in str(err.value)


def test_bundled_scenarios_are_valid_and_overrides_are_checked() -> None:
    assert {"fanout", "flash_sale", "reconnect_storm", "chat_storm", "auction", "social",
            "sample"} <= set(bundled_names())
    for name in ("fanout", "flash_sale", "reconnect_storm", "chat_storm", "auction",
                 "social"):
        scenario = load_scenario_file(resolve(name))
        assert scenario.name == name
    s = with_overrides(load_scenario_file(resolve("flash_sale")), viewers=50, duration=9.0,
                       seed=4)
    assert (s.viewers.count, s.run.duration_s, s.run.seed) == (50, 9.0, 4)
    with pytest.raises(ScenarioError, match=r"--duration \(run.duration_s\)"):
        with_overrides(s, duration=0.5)
    with pytest.raises(ScenarioError, match="unknown key 'kind'"):
        build_scenario({"kind": "fanout"}, "inline")
    auction = load_scenario_file(resolve("auction"))
    assert auction.auction.enabled and auction.auction.bidders >= 100
    with pytest.raises(ScenarioError, match=r"auction.bidders: 300 is above viewers.count 50"):
        with_overrides(auction, viewers=50)
    with pytest.raises(ScenarioError, match="leaves no time for the auction"):
        with_overrides(auction, duration=20.0)
    social = load_scenario_file(resolve("social"))
    assert social.group_buy.enabled and social.poll.enabled and social.sale.enabled
    assert social.to_dict()["poll"]["options"] == ["Red", "Blue", "Green"]
    with pytest.raises(ScenarioError,
                       match=r"group_buy.participants: 100 is above viewers.count 50"):
        with_overrides(social, viewers=50)
