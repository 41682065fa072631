// The viewer page's clock: re-render the time-dependent parts exactly when a
// displayed second changes, by server time. It only draws countdowns; no state
// flips here (the server's events do that). Panels are wired in by ../viewer.js.

import { now } from "./state.js";

const renders = [];
const deadlines = [];
let timer = null;

/** Renders to run on every displayed second. */
export function onTick(...fns) { renders.push(...fns); }

/** A source of server timestamps counted down on screen: `() => [ms, …]`. */
export function countdownsFrom(fn) { deadlines.push(fn); }

/** When a countdown to `target` next changes its whole-second display. */
function nextFlip(target, at) {
  const remaining = target - at;
  if (remaining <= 0) return Infinity;
  const secs = Math.ceil(remaining / 1000);
  return remaining - (secs - 1) * 1000;
}

export function scheduleClock() {
  clearTimeout(timer);
  const at = now();
  let wait = 1000;
  for (const source of deadlines) {
    for (const t of source(at)) if (Number.isFinite(t)) wait = Math.min(wait, nextFlip(t, at));
  }
  timer = setTimeout(tick, Math.max(1, Math.ceil(wait) + 1));
}

function tick() {
  for (const render of renders) render();
  scheduleClock();
}

/** Redraw now: the estimate of server time moved, so the shown seconds and the
 *  next flip may both have changed. */
export function redrawClock() { tick(); }
