"""livesell-loadtest: drives a livesell server with a crowd of real WebSocket viewers
and a scripted host, measures fan-out and selling, and ends with a checked
correctness report (sold <= stock, per-buyer limits, store and Redis agree, no
lost or duplicate orders, verifiable lotteries, gap-free sequence numbers).

Modules: `scenario` (scenario files), `trace` (recorded bursts), `checks` (the
pure correctness checker), `stats`, `viewer` and `worker` (the crowd, one
process per core), `host` (the host's HTTP side), `spawn` (a local server),
`engine` (one run end to end), `chaos` (faults injected into a spawned server,
`--chaos`) and `stall` (its store-locking helper process), `report`
(report.json and report.html), `progress` (live display), `bench`
(side-by-side benchmarks), `cli`.
"""

__version__ = "0.1.0"
