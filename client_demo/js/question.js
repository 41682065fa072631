// Questions (Q&A) as the server sends them, for both pages (docs/protocol.md
// section 17).
//
// The server decides every question, upvote and answer; the pages keep the latest
// view it sent. Views can reach a page in another order than the server made them
// (a snapshot reads the counts after its seq, so a `question_votes` event just
// after it may be older; an `asked` or `upvoted` reply can follow the event it
// caused), so a question's view only moves forward: unanswered before answered,
// more votes before fewer (one upvote per viewer, never taken back).

export const answered = (q) => !!(q && q.answered_at);

/** The question view to keep when `incoming` arrives while `current` is shown. */
export function newerQuestion(current, incoming) {
  if (!incoming) return current;
  if (!current || current.question_id !== incoming.question_id) return { ...incoming };
  if (answered(current) !== answered(incoming)) return answered(incoming) ? { ...incoming } : current;
  // Same state: the incoming fields, with the higher count of the two.
  return { ...incoming, votes: Math.max(current.votes ?? 0, incoming.votes ?? 0) };
}

/** Apply a count (a `question_votes` event, an `upvoted` reply) to an unanswered
 *  view; false when it is not newer than what the view has. */
export function applyCount(q, votes) {
  if (!q || answered(q) || !Number.isFinite(votes) || votes <= (q.votes ?? 0)) return false;
  q.votes = votes;
  return true;
}

/** The server's order of unanswered questions: most votes first, the earlier on a
 *  tie (then by id, so every page shows the same order). */
export function byVotes(a, b) {
  return (b.votes ?? 0) - (a.votes ?? 0) || (a.asked_at ?? 0) - (b.asked_at ?? 0) ||
    (a.question_id < b.question_id ? -1 : a.question_id > b.question_id ? 1 : 0);
}

/** Answered questions, the latest answered first. */
export function byAnswered(a, b) {
  return (b.answered_at ?? 0) - (a.answered_at ?? 0) || byVotes(a, b);
}

/**
 * The unanswered questions the page shows that a fresh list of the server's top
 * ones (the snapshot's `questions`, or the console's `GET …/questions`) proves are
 * no longer unanswered: the host answered them while the page missed the event.
 *
 * The list holds the top `top` unanswered questions, read after everything the
 * page knows from `shown` (so only what the page learned before that read may be
 * passed: for a snapshot, from events and earlier snapshots, whose seq orders them
 * before it, never from a reply, which can carry a newer state): a question missing
 * from it was answered when the list is not full, or when, even with the votes the
 * page knew (which can only have grown), it ranks ahead of the list's last one. Any
 * other missing question may simply rank below the list: it stays.
 */
export function missedAnswers(shown, list, top) {
  const listed = new Set(list.map((q) => q.question_id));
  const last = list.length >= top ? [...list].sort(byVotes)[list.length - 1] : null;
  const out = [];
  for (const q of shown) {
    if (answered(q) || listed.has(q.question_id)) continue;
    if (!last || byVotes(q, last) < 0) out.push(q.question_id);
  }
  return out;
}
