"""The features layer: what a room does. For now `show` still holds most
features in one class (rooms, catalogue, pins, selling, coupons, lotteries,
chat, moderation, reports); `pulse` is the clockwork and the Redis rebuild,
`rooms` the room lifecycle, `recorder` show recording. The next step splits
`show` into one module per concern (docs/architecture.md).
"""
