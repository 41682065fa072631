"""The show: every feature of a live room, built over one context and
registered with one registry.

Each feature module owns one concern end to end (its HTTP routes, viewer
messages, due jobs, restore from the store): the room and its snapshot
(room.py), the lifecycle (rooms.py), the catalogue and pins (catalogue.py),
buy-it-now (listings.py), sales (sales.py), waitlists (waitlist.py), holds and
checkout (buying.py), comment-to-buy (claims.py), coupons (coupons.py),
lotteries (lotteries.py), auctions (auctions.py), chat and moderation (chat.py),
the pinned message, polls and questions (social.py), group buys (group_buys.py),
reports (reports.py), fan points and levels (fans.py), referral invites
(referrals.py), order cancellation (orders.py), webhooks (webhooks.py).
Host actions validate with `core.domain`, write the durable record to the
store, then update Redis through `state/` and broadcast through the hub. Viewer
actions run one atomic script each. The pulse (pulse.py) runs what falls due;
restore.py rebuilds Redis from the store. This module only wires them: the
order of registration is the order of restoring a room."""

from __future__ import annotations

from server.core.settings import Settings
from server.features.auctions import Auctions
from server.features.buying import Buying
from server.features.catalogue import Catalogue
from server.features.chat import ChatRoom
from server.features.claims import Claims
from server.features.context import Context
from server.features.coupons import Coupons
from server.features.fans import Fans
from server.features.group_buys import GroupBuys
from server.features.listings import Listings
from server.features.lotteries import Lotteries
from server.features.orders import Orders
from server.features.pulse import Pulse
from server.features.recorder import Recorder
from server.features.referrals import Referrals
from server.features.registry import Feature, Registry
from server.features.reports import Reports
from server.features.restore import Restore
from server.features.room import Room
from server.features.rooms import Lifecycle
from server.features.sales import Sales
from server.features.social import Social
from server.features.waitlist import Waitlist
from server.features.webhooks import Webhooks
from server.realtime.hub import Hub
from server.state.data import StateData
from server.state.health import Health
from server.state.store import OrderStore


class Show:
    def __init__(self, settings: Settings) -> None:
        self.ctx = ctx = Context(settings)
        self.registry = Registry()
        self.catalogue = Catalogue(ctx)
        self.listings = Listings(ctx, self.catalogue)
        self.sales = Sales(ctx, self.catalogue)
        self.waitlist = Waitlist(ctx)
        self.buying = Buying(ctx, self.waitlist)
        self.claims = Claims(ctx, self.catalogue, self.buying, self.waitlist)
        self.coupons = Coupons(ctx)
        self.fans = Fans(ctx)
        self.lotteries = Lotteries(ctx, self.fans)
        self.auctions = Auctions(ctx, self.catalogue)
        self.group_buys = GroupBuys(ctx, self.catalogue, self.fans)
        self.lifecycle = Lifecycle(ctx, self.sales, self.listings, self.waitlist,
                                   self.lotteries, self.auctions)
        self.room = Room(ctx, self.lifecycle)
        self.chat = ChatRoom(ctx)
        self.social = Social(ctx, self.chat)
        self.reports = Reports(ctx, self.room)
        self.referrals = Referrals(ctx, self.fans)
        self.orders = Orders(ctx)
        self.webhooks = Webhooks(ctx)
        # Restorers run in this order: products before the listings and sales selling
        # them, drops before an ended room closes them.
        features: tuple[Feature, ...] = (
            self.room, self.catalogue, self.listings, self.sales, self.buying, self.waitlist,
            self.claims, self.coupons, self.lotteries, self.auctions, self.group_buys,
            self.lifecycle, self.chat, self.social, self.reports, self.fans, self.referrals,
            self.orders, self.webhooks)
        for feature in features:
            feature.register(self.registry)
        self.restore = Restore(ctx, self.registry)
        self.pulse = Pulse(ctx, self.registry, self.buying, self.restore)

    def bind(self, data: StateData, hub: Hub, store: OrderStore, health: Health,
             recorder: Recorder | None, secret: bytes) -> None:
        """The server started: the state layer, hub and store the features use, and
        the server's signing secret."""
        self.ctx.bind(data, hub, store, health, recorder, secret)
        if recorder is not None:
            recorder.keywords = self.lotteries.keywords
        hub.snapshot = self.room.snapshot

    async def stop_background(self) -> None:
        """Cancel the retries still waiting for Redis (recovery finishes them), and
        write what waits for the store (invite counts, webhook events)."""
        await self.buying.stop_background()
        await self.fans.stop_background()
        await self.webhooks.stop()
        # What is counted or queued for the store is written before it closes.
        await self.referrals.stop()
        await self.ctx.stop_outbox(2.0)
