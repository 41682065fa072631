"""Comment-to-buy: the host sets a claim keyword on a product (default SOLD); a
chat comment that is the keyword (or `<keyword> <n>` for n units, when allowed)
buys it through the same reserve step as the buy button, its request id made
from the comment's (`chat:` + the chat frame's request id, or the message id
without one), so the same comment sent again never buys twice. The buyer gets the
hold as the private answer to their comment; the room sees who bought in chat
(`claimed`). When nothing is left, or others already wait, the comment puts the
buyer on the product's waitlist (features/waitlist.py) and answers their place.

Claims are decided in the order their comments reach Redis: within one process
that is the order of the room's sequence numbers (each comment is published,
then claimed, and the ledger keeps call order); across `--workers` processes, two
comments a moment apart may be decided in the other order. The keywords live in
Redis and in each process's memory, learned within a second (upkeep) when another
process changes them, as keyword lotteries are."""

from __future__ import annotations

from typing import Any

from server.core import domain, events
from server.core.domain import now_ms
from server.core.errors import Conflict
from server.features.buying import Buying
from server.features.catalogue import Catalogue
from server.features.context import Answer, Context
from server.features.registry import Call, ChatPost, Registry, Route
from server.features.waitlist import Waitlist
from server.state.faults import REDIS_FAULTS

# A claim the line can serve: nothing left, or others already wait. (Too many units
# for what is left is not: the line serves one unit each.)
TO_WAITLIST = frozenset({"sold_out", "waitlist_ahead"})


class Claims:
    def __init__(self, ctx: Context, catalogue: Catalogue, buying: Buying,
                 waitlist: Waitlist) -> None:
        self.ctx = ctx
        self.catalogue = catalogue
        self.buying = buying
        self.waitlist = waitlist
        # room -> lower-case keyword -> (product id, quantities allowed)
        self.words: dict[str, dict[str, tuple[str, bool]]] = {}

    def register(self, registry: Registry) -> None:
        registry.route(Route("PUT", "/products/{product_id}/claims", self._put,
                             body=domain.CLAIMS_SHAPE, answer="ProductCard",
                             record_as="claims"))
        registry.on_chat(self._chat)
        registry.on_restore(self.restore)
        registry.on_upkeep(self.refresh)

    async def _put(self, call: Call) -> Any:
        return await self.put(call.room_id, call.params["product_id"], call.body)

    async def put(self, room_id: str, product_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Switch comment-to-buy on (with its keyword) or off for a product; answers
        the product's card, which every viewer gets too. The store decides that the
        keyword claims no other product of the room; Redis follows in one step
        (claim_word.lua)."""
        await self.catalogue.product(room_id, product_id)
        word = domain.parse_claim_word(body, product_id)
        owner = await self.ctx.store.put_claim_word(room_id, product_id,
                                                    word.keyword if word else None,
                                                    word.quantities if word else True,
                                                    now_ms())
        if owner is not None and word is not None:
            raise Conflict(f"the keyword {word.keyword} already claims product "
                           f"{owner}: choose another", code="keyword_in_use",
                           details={"product_id": owner})
        await self._mirror(room_id, product_id, word)
        card = await self.catalogue.product_card(room_id, product_id)
        await self.ctx.publish(room_id, events.product(card))
        return card

    async def _mirror(self, room_id: str, product_id: str,
                      word: domain.ClaimWord | None) -> None:
        """Redis after the store: the keyword in the room's lookup and the product's
        card, and this process's map at once (others learn it within a second)."""
        await self.ctx.scripts.claim_word(room_id, product_id, word.keyword if word else "",
                                          word.quantities if word else True)
        if word is not None:
            await self.ctx.data.sales.flag_claim_room(room_id)
        self.words[room_id], = await self.ctx.data.sales.claim_words([room_id])

    async def _chat(self, post: ChatPost) -> Answer | None:
        words = self.words.get(post.room_id)
        if not words or post.from_host:
            return None
        claim = domain.match_claim(post.text, words,
                                   self.ctx.settings.sale.max_quantity_per_buy)
        if claim is None:
            return None
        product_id, quantity = claim
        new: list[bool] = []
        answer = await self.buying.buy(
            post.viewer, post.room_id, "chat:" + (post.request_id or post.message_id),
            product_id, quantity, post.client, on_new=lambda: new.append(True))
        if new:
            # The hold is made: telling the room is a courtesy that must not turn it
            # into an error (a resent comment without a request id would hold again).
            try:
                await self.ctx.publish(post.room_id, events.claimed(
                    product_id, post.viewer.viewer_id, post.viewer.nickname, quantity,
                    post.message_id))
            except REDIS_FAULTS as exc:
                self.ctx.health.redis_failed(exc)
        elif answer.kind == "error" and answer.body.get("code") in TO_WAITLIST:
            waiting = await self.waitlist.join(post.viewer, post.room_id, product_id)
            # A line that will not take them (full, say): the buy's own refusal says more.
            return waiting if waiting.kind == "waitlist" else answer
        return answer

    async def refresh(self) -> None:
        """Learn keywords set or cleared through other processes: only the rooms that
        set one and whose show has not ended are read, all in one round trip."""
        rooms = sorted(await self.ctx.data.sales.claim_rooms())
        self.words = dict(zip(rooms, await self.ctx.data.sales.claim_words(rooms),
                              strict=True))

    async def restore(self, room_id: str) -> None:
        for product_id, (keyword, quantities) in \
                (await self.ctx.store.claim_words(room_id)).items():
            await self._mirror(room_id, product_id,
                               domain.ClaimWord(product_id, keyword, quantities))
