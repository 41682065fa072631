// Polls as the server sends them, for both pages (docs/protocol.md section 16).
//
// The server decides every vote and the close; the pages keep the latest view it
// sent. Views can reach a page in another order than the server made them (a
// snapshot reads the counts after its seq, so a `poll_votes` event just after it
// may be older; a host action's answer can follow the event it caused), so a
// poll's view only moves forward: open before closed, more votes before fewer
// (one vote per viewer, never taken back).

const closed = (p) => p.state === "closed";

/** The poll view to keep when `incoming` arrives while `current` is shown. */
export function newerPoll(current, incoming) {
  if (!incoming) return current;
  if (!current || current.poll_id !== incoming.poll_id) return { ...incoming };
  if (closed(current) !== closed(incoming)) return closed(incoming) ? { ...incoming } : current;
  return (incoming.total ?? 0) >= (current.total ?? 0) ? { ...incoming } : current;
}

/** Apply a `poll_votes` event (the latest counts) to the view; false when it is
 *  not newer than what the view has. */
export function applyVotes(p, ev) {
  if (!p || !Array.isArray(ev.votes) || (ev.total ?? 0) < (p.total ?? 0)) return false;
  p.votes = ev.votes;
  p.total = ev.total;
  p.percent = ev.percent;
  return true;
}
