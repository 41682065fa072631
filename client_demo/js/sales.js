// Sale views as the server sends them. The server decides a sale's state
// (scheduled, open, ended, stopped) and puts it in every sale view: the snapshot,
// sale_scheduled / sale_open / sale_closed (sent by its timers at starts_at and
// ends_at), product and stock events, the host's stats. Pages show that state and
// never recompute it from starts_at / ends_at; their clock only draws countdowns.
//
// Views can reach a page in another order than the server computed them: a
// coalesced stock event built a moment before the sale's close timer fired, or the
// host console's stats answer arriving after a sale_closed event. The server's
// state of one sale only moves forward, so a view that would move it back is older
// than the one already shown and is not applied.

const RANK = { scheduled: 0, open: 1, ended: 2, stopped: 2 };
const finished = new Set(); // sale ids the server has said are over

/** The sale view to keep when `incoming` arrives while `current` is shown. */
export function newerSale(current, incoming) {
  if (!incoming) return incoming;
  const rank = RANK[incoming.state] ?? 0;
  if (rank < 2 && finished.has(incoming.sale_id)) return current;
  if (current && current.sale_id === incoming.sale_id && rank < (RANK[current.state] ?? 0)) return current;
  if (rank === 2) finished.add(incoming.sale_id);
  return incoming;
}

/** A product card from the server, its sale merged with the one already held. */
export function mergeProduct(old, card) {
  if (old && old.sale && card.sale) card.sale = newerSale(old.sale, card.sale);
  return card;
}

/** A sale's state as the server last said it, or null without a sale. */
export const saleState = (sale) => (sale ? sale.state : null);

/** Scheduled or open: the sale's price and units are the ones on show. */
export const saleActive = (sale) => !!sale && (sale.state === "scheduled" || sale.state === "open");
