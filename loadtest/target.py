"""The server a run talks to and its room: spawn one (pinned to its cores, with
the settings the scenario needs) or check a given --url (loopback only);
create a room (or use --room with its host key) and add the scenario's
products (the sale's, the auction's, the group deal's, the fan-out's); at the end stop the
spawned server and read its order store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import httpx

from loadtest.cluster import ServerCluster
from loadtest.context import RunContext, RunOptions
from loadtest.host import Host, HostError, TargetError, check_loopback
from loadtest.spawn import SpawnedServer, plan_cores

SALE_PRODUCT = "lt-sale"
AUCTION_PRODUCT = "lt-auction"
GROUP_PRODUCT = "lt-group"
FANOUT_PRODUCTS = ("lt-a", "lt-b", "lt-c")


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def server_processes(opts: RunOptions) -> int:
    """How many processes the spawned server runs: --server-processes, else the
    core plan's choice."""
    return opts.server_processes or plan_cores(_cpus()).workers


class Target:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.server: SpawnedServer | None = None
        self.base = ""
        self.ws_host = "127.0.0.1"
        self.ws_port = 0
        self.gen_cpus: list[int] | None = None  # the generators' cores (spawned server)
        self.orig_affinity: set[int] | None = None
        self.room_id = ""
        self.host: Host | None = None

    async def start(self) -> None:
        """Spawn the server, or take --url after checking it is on loopback."""
        opts, s = self.ctx.opts, self.ctx.scn
        if opts.url:
            self.ws_host, self.ws_port = check_loopback(opts.url)
            self.base = opts.url.rstrip("/")
            return
        env = {}
        if s.sale.hold_seconds:
            env["LIVESELL_SALE_HOLD_SECONDS"] = str(s.sale.hold_seconds)
            if s.sale.enabled and s.sale.waitlist_share:
                # An offered unit nobody takes moves on as fast as an abandoned hold
                # (the server's least offer time is 5 s).
                env["LIVESELL_SALE_WAITLIST_OFFER_S"] = str(max(5.0, s.sale.hold_seconds))
        env["LIVESELL_CHAT_MESSAGES_PER_S"] = str(s.chat.server_rate_per_s)
        # Every simulated viewer comes from one loopback address and chats at its own
        # checked rate: the per-address identity limit and the room-wide chat cap
        # (public-edge bounds, tested in tests/test_identities.py) are off here.
        env["LIVESELL_AUTH_GUEST_MINTS_PER_IP_PER_MIN"] = "0"
        env["LIVESELL_CHAT_ROOM_MESSAGES_PER_S"] = "0"
        env["LIVESELL_CHAT_BURST"] = str(s.chat.server_burst)
        cores = plan_cores(_cpus())
        self.gen_cpus = cores.generators
        if opts.servers:
            # Several servers behind HAProxy, on one Redis and one PostgreSQL (all
            # private); every server on the server cores, as one server would be.
            self.server = ServerCluster(env, opts.servers, cores.server,
                                        redis_cpus=cores.redis, redis_url=opts.redis_cluster,
                                        redis_cluster=bool(opts.redis_cluster))
            self.ctx.progress.update(phase=f"starting {opts.servers} servers and haproxy")
        else:
            self.server = SpawnedServer(env, cores.server, redis_cpus=cores.redis,
                                        workers=server_processes(opts))
            self.ctx.progress.update(phase="starting a server")
        self.base = await asyncio.to_thread(self.server.start)
        self.ws_host, self.ws_port = check_loopback(self.base)
        if self.gen_cpus:
            # Keep this process (the host and the progress display) off the server's core.
            self.orig_affinity = os.sched_getaffinity(0)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.gen_cpus)

    async def open_room(self, http: httpx.AsyncClient) -> Host:
        """The run's room (created, or --room) with the scenario's products."""
        opts, s, data = self.ctx.opts, self.ctx.scn, self.ctx.data
        if opts.room:
            if not opts.host_key:
                raise TargetError("--room: needs the room's host key (--host-key or "
                                  "LIVESELL_HOST_KEY)")
            host = Host(http, opts.room, opts.host_key)
            try:
                await host.audit()
            except HostError as exc:
                raise TargetError(f"--room {opts.room}: {exc}") from None
        else:
            try:
                admin_key = opts.admin_key
                if isinstance(self.server, ServerCluster):
                    admin_key = self.server.admin_key  # the cluster's servers require one
                host = await Host.create_room(http, f"livesell-loadtest {s.name}",
                                              admin_key)
            except HostError as exc:
                raise TargetError(f"cannot create a room on {self.base}: {exc}") from None
        self.host = host
        self.room_id = host.room_id
        if opts.trace is not None:
            return host
        if s.sale.enabled:
            stock = s.sale.stock or s.sale.units
            await host.product({"product_id": SALE_PRODUCT, "title": "Flash sale item",
                                "price": s.sale.price * 2, "currency": s.sale.currency,
                                "stock": stock})
            data.products[SALE_PRODUCT] = stock
            # Pinned for show only: the scenario sells it in its flash sale, at the
            # sale's price, never at the list price before the sale opens.
            await host.call("POST", "/pins", {"product_id": SALE_PRODUCT,
                                              "open_for_sale": False})
        if s.auction.enabled:
            # One unit: the auction takes it out of stock (held) while it runs.
            await host.product({"product_id": AUCTION_PRODUCT, "title": "Auction item",
                                "price": s.auction.start_price, "currency": s.sale.currency,
                                "stock": 1})
            data.products[AUCTION_PRODUCT] = 1
        if s.group_buy.enabled:
            # The deal's units are the product's stock: each group takes its N units
            # out of it when it starts.
            g = s.group_buy
            await host.product({"product_id": GROUP_PRODUCT, "title": "Group deal item",
                                "price": max(1, g.group_price * 2),
                                "currency": s.sale.currency, "stock": g.units})
            data.products[GROUP_PRODUCT] = g.units
        if s.host.events_per_s and set(s.host.actions) - {"announce"}:
            for pid in FANOUT_PRODUCTS:
                await host.product({"product_id": pid, "title": f"Item {pid}", "price": 1000,
                                    "stock": 10})
                data.products[pid] = 10
        return host

    def stop(self) -> None:
        """Stop a spawned server, read its order store, give the cores back."""
        if self.server is not None:
            self._stop_server(self.server)
        if self.orig_affinity is not None:
            try:
                os.sched_setaffinity(0, self.orig_affinity)
            except OSError as exc:
                self.ctx.warnings.append(f"could not give this process its cores back: {exc}")

    def _stop_server(self, server: SpawnedServer) -> None:
        ctx = self.ctx
        ctx.progress.update(phase="stopping the server")
        code = server.stop()
        if code not in (0, None):
            ctx.warnings.append(f"the spawned server exited with {code}: "
                                f"{server.log_tail(500)}")
        if self.room_id:
            try:
                ctx.data.orders_store = server.read_orders(self.room_id)
            except Exception as exc:  # the store is what the checks compare against
                ctx.warnings.append(f"could not read the order store: {exc}")
        server.cleanup()
