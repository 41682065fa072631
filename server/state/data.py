"""The state layer's door for features: one object holding the Redis-backed
data classes (rooms, catalogue, sales, offers, auctions, social, groups, chat,
schedule, rebuild), the
typed script wrappers and the order store. Nothing above this layer sees the
Redis client."""

from __future__ import annotations

from typing import Any

from server.state.auctions_data import AuctionsData
from server.state.catalogue_data import CatalogueData
from server.state.chat_data import ChatData
from server.state.fans_data import FansData, ReferralsData
from server.state.groups_data import GroupsData
from server.state.memory_watch import MemoryWatch
from server.state.offers_data import OffersData
from server.state.rebuild_data import RebuildData
from server.state.rooms_data import RoomsData
from server.state.sales_data import SalesData
from server.state.schedule import ScheduleData
from server.state.scripts import Scripts
from server.state.social_data import SocialData


class StateData:
    def __init__(self, redis: Any, scripts: Scripts) -> None:
        self.scripts = scripts
        self.rooms = RoomsData(redis, scripts)
        self.catalogue = CatalogueData(redis)
        self.sales = SalesData(redis)
        self.offers = OffersData(redis)
        self.auctions = AuctionsData(redis)
        self.social = SocialData(redis)
        self.groups = GroupsData(redis)
        self.chat = ChatData(redis)
        self.fans = FansData(redis)
        self.referrals = ReferralsData(redis)
        self.schedule = ScheduleData(redis)
        self.rebuild = RebuildData(redis, scripts)
        self._memory = MemoryWatch()
        self._redis = redis

    async def check_memory(self) -> float | None:
        """Redis's share of its maxmemory in use (warns once per crossing)."""
        return await self._memory.check(self._redis)
