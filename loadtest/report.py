"""The run's report: report.json (settings, measurements, and one entry per
invariant in `checks`) and a self-contained report.html whose charts are SVG
drawn by matplotlib and inlined, with no external URL.

The JSON is the record to compare runs with; the HTML is for people.
"""

from __future__ import annotations

import html
import io
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest import __version__
from loadtest.context import RunResult
from loadtest.stats import percentile

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def exit_code(result: RunResult) -> int:
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def as_json(result: RunResult) -> dict[str, Any]:
    return {
        "tool": "livesell-loadtest", "version": __version__,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ok": result.ok, "interrupted": result.interrupted, "exit_code": exit_code(result),
        "settings": result.settings,
        "measurements": result.measurements,
        "checks": [c.to_dict() for c in result.checks],
        "warnings": result.warnings,
        "timeline": result.charts.get("timeline", []),
    }


def write_report(result: RunResult, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    data = as_json(result)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    html_path = directory / "report.html"
    html_path.write_text(render_html(result, data), encoding="utf-8")
    return json_path, html_path


# ------------------------------------------------------------------ charts

_SVG_CLEANUP = [
    (re.compile(r"<\?xml[^>]*\?>\s*"), ""),
    (re.compile(r"<!DOCTYPE[^>]*>\s*", re.S), ""),
    (re.compile(r"<metadata>.*?</metadata>\s*", re.S), ""),
    # Inline SVG in HTML needs no namespace declarations; dropping them keeps the
    # page free of any URL.
    (re.compile(r'\sxmlns(:\w+)?="[^"]*"'), ""),
]


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    for pattern, repl in _SVG_CLEANUP:
        text = pattern.sub(repl, text)
    return text


def _figure(width: float = 7.5, height: float = 3.0, columns: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "livesell-loadtest"
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=(width, height))
    for ax in (axes if columns > 1 else [axes]):
        ax.grid(True, alpha=0.3)
    return fig, axes


def _close(fig: Any) -> None:
    from matplotlib import pyplot as plt

    plt.close(fig)


def _cdf(ax: Any, values: Sequence[float], label: str) -> None:
    v = sorted(values)
    if not v:
        return
    n = len(v)
    step = max(1, n // 2000)
    xs = [*v[::step], v[-1]]
    ys = [*(i / n for i in range(0, n, step)), 1.0]
    ax.plot(xs, ys, label=label)


def chart_latency(latency: Sequence[float]) -> str | None:
    if not latency:
        return None
    fig, (ax1, ax2) = _figure(9, 3.2, columns=2)
    v = sorted(latency)
    top = max(1.0, percentile(v, 99.5))
    ax1.hist([x for x in v if x <= top], bins=60, color="#3b6ea8")
    ax1.set_xlabel("fan-out latency, ms (to p99.5)")
    ax1.set_ylabel("events")
    _cdf(ax2, v, "latency")
    ax2.set_xscale("symlog", linthresh=1.0)
    ax2.set_xlabel("fan-out latency, ms")
    ax2.set_ylabel("share of events")
    for q, style in ((50, ":"), (99, "--")):
        ax2.axvline(percentile(v, q), linestyle=style, color="grey", label=f"p{q}")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    out = _svg(fig)
    _close(fig)
    return out


def chart_timeline(timeline: Sequence[dict[str, Any]]) -> str | None:
    if len(timeline) < 2:
        return None
    fig, ax = _figure(9, 3.2)
    t = [r["t"] for r in timeline]
    ax.plot(t, [r.get("connected", 0) for r in timeline], color="#3b6ea8",
            label="viewers connected")
    ax.set_xlabel("seconds")
    ax.set_ylabel("viewers connected")
    ax2 = ax.twinx()
    ax2.plot(t, [r.get("events_per_s", 0) for r in timeline], color="#d08c2e",
             label="events delivered/s")
    ax2.plot(t, [r.get("buys_per_s", 0) for r in timeline], color="#2e9a5c",
             label="buys/s")
    ax2.set_ylabel("per second")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper left",
              fontsize="small")
    fig.tight_layout()
    out = _svg(fig)
    _close(fig)
    return out


def chart_stock(stock: Sequence[tuple[float, int, int, int]]) -> str | None:
    if len(stock) < 2:
        return None
    fig, ax = _figure(9, 3.0)
    t = [s[0] for s in stock]
    ax.stackplot(t, [s[3] for s in stock], [s[2] for s in stock], [s[1] for s in stock],
                 labels=["sold", "held", "left"], colors=["#2e9a5c", "#d08c2e", "#c9d6e8"])
    ax.set_xlabel("seconds since the show started")
    ax.set_ylabel("units")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    out = _svg(fig)
    _close(fig)
    return out


def chart_selling(buy_ms: Sequence[float], checkout_ms: Sequence[float]) -> str | None:
    if not buy_ms and not checkout_ms:
        return None
    fig, ax = _figure(9, 3.0)
    _cdf(ax, buy_ms, "buy")
    _cdf(ax, checkout_ms, "checkout")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("reply latency, ms")
    ax.set_ylabel("share of requests")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = _svg(fig)
    _close(fig)
    return out


def chart_cpu(timeline: Sequence[dict[str, Any]],
              util: dict[int, list[tuple[float, float]]]) -> str | None:
    server = [(r["t"], r["server_cpu"]) for r in timeline if "server_cpu" in r]
    if not server and not any(util.values()):
        return None
    fig, ax = _figure(9, 3.0)
    if server:
        ax.plot([x[0] for x in server], [x[1] * 100 for x in server], label="server process")
    for wid, points in sorted(util.items()):
        if points:
            ax.plot([p[0] for p in points], [p[1] * 100 for p in points], linestyle="--",
                    label=f"generator {wid}")
    ax.axhline(100, color="grey", linewidth=0.8)
    ax.set_xlabel("seconds (server: since the first sample; generators: since they started)")
    ax.set_ylabel("% of one core")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    out = _svg(fig)
    _close(fig)
    return out


# ------------------------------------------------------------------ page

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#1d2330;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde2ea}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;
border-bottom:1px solid #eef1f5;text-align:left;vertical-align:top}
.ok{color:#17703d;font-weight:600}.fail{color:#b3261e;font-weight:600}
.verdict{font-size:1.2rem;padding:.6rem 1rem;border-radius:6px;display:inline-block}
.verdict.ok{background:#e3f4e9}.verdict.fail{background:#fbe5e3}
.warn{background:#fff6df;padding:.5rem 1rem;border-radius:6px}
pre{background:#f5f7fa;padding:.6rem;overflow:auto;font-size:12px}
svg{max-width:100%;height:auto}
"""


def _kv_table(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and v and all(not isinstance(x, dict | list) for x in
                                             v.values()):
            v = ", ".join(f"{a}: {b}" for a, b in v.items())
        elif isinstance(v, dict | list):
            v = json.dumps(v, default=str)
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _chaos_html(chaos: dict[str, Any]) -> str:
    from loadtest.chaos_report import describe

    rows = ["<h2>Chaos</h2>",
            f"<p>--chaos {html.escape(str(chaos.get('spec', '')))}; times are "
            f"{html.escape(str(chaos.get('clock', '')))}; failed closed: answers with code "
            + ", ".join(html.escape(c) for c in chaos.get("failed_closed_codes", []))
            + "</p><table><tr><th>fault</th><th>injected</th><th>outcome</th>"
            "<th>buys/checkouts failed closed</th><th>recovery</th></tr>"]
    for entry in chaos.get("faults", []):
        d = describe(entry)
        mark = "" if entry.get("ok") else " class='fail'"
        rows.append(f"<tr><td{mark}>{html.escape(d['fault'])}</td>"
                    f"<td>{html.escape(d['when'])}</td><td>{html.escape(d['what'])}</td>"
                    f"<td>{html.escape(d['failed_closed'])}</td>"
                    f"<td>{html.escape(d['recovery'])}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def render_html(result: RunResult, data: dict[str, Any]) -> str:
    name = html.escape(str(result.settings.get("scenario", {}).get("name", "")))
    if result.interrupted:
        verdict = '<span class="verdict fail">Interrupted: partial report</span>'
    elif result.ok:
        verdict = '<span class="verdict ok">All checks passed</span>'
    else:
        failed = sum(1 for c in result.checks if not c.ok)
        verdict = f'<span class="verdict fail">{failed} check(s) failed</span>'
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>livesell-loadtest: {name}</title><style>{_CSS}</style></head><body>",
             f"<h1>livesell-loadtest: {name}</h1><p>{verdict}</p>"]
    if result.warnings:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(
            f"<li>{html.escape(w)}</li>" for w in result.warnings) + "</ul></div>")
    parts.append("<h2>Correctness checks</h2><table><tr><th></th><th>invariant</th>"
                 "<th>detail</th></tr>")
    for c in result.checks:
        mark = "<span class='ok'>pass</span>" if c.ok else "<span class='fail'>FAIL</span>"
        parts.append(f"<tr><td>{mark}</td><td>{html.escape(c.name)}</td>"
                     f"<td>{html.escape(c.detail)}</td></tr>")
    parts.append("</table>")
    m = result.measurements
    if m.get("chaos"):
        parts.append(_chaos_html(m["chaos"]))
    charts = result.charts
    sections = [
        ("Fan-out", m.get("fanout", {}), chart_latency(charts.get("latency_ms", []))),
        ("Crowd", m.get("viewers", {}), chart_timeline(charts.get("timeline", []))),
        ("Selling", m.get("selling", {}), chart_selling(charts.get("buy_ms", []),
                                                         charts.get("checkout_ms", []))),
        ("Stock over time", {}, chart_stock(charts.get("stock", []))),
        ("Server", m.get("server", {}), chart_cpu(charts.get("timeline", []),
                                                  charts.get("generator_util", {}))),
    ]
    for title, values, svg in sections:
        if not values and not svg:
            continue
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if svg:
            parts.append(f"<figure>{svg}</figure>")
        if values:
            parts.append(_kv_table(values))
    for auction in m.get("auctions") or []:
        parts.append(f"<h2>Auction {html.escape(str(auction.get('auction_id')))}</h2>"
                     + _kv_table(auction))
    for deal in m.get("group_deals") or []:
        parts.append(f"<h2>Group deal {html.escape(str(deal.get('deal_id')))}</h2>"
                     + _kv_table(deal))
    for poll in m.get("polls") or []:
        parts.append(f"<h2>Poll {html.escape(str(poll.get('poll_id')))}</h2>"
                     + _kv_table(poll))
    if m.get("referrals"):
        parts.append("<h2>Referral invites</h2>" + _kv_table(m["referrals"]))
    if m.get("outcomes"):
        parts.append("<h2>Outcomes by action and code</h2>" + _kv_table(m["outcomes"]))
    if m.get("generator"):
        parts.append("<h2>Generator processes</h2><table><tr>" + "".join(
            f"<th>{html.escape(k)}</th>" for k in m["generator"][0]) + "</tr>")
        for g in m["generator"]:
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>"
                                          for v in g.values()) + "</tr>")
        parts.append("</table>")
    if m.get("trace"):
        parts.append("<h2>Trace replay</h2>" + _kv_table(m["trace"]))
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(
        data["settings"], indent=2, default=str)) + "</pre>")
    parts.append("</body></html>\n")
    return "".join(parts)
