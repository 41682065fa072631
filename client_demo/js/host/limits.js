// The server's limits on the console's inputs: the longest text each form may
// send and the longest slow mode, all from the room state's `limits`. The page
// keeps no copy of them; the server checks every action whatever the page shows.

import { $ } from "../util.js";
import { applyImageLimit } from "./catalogue.js";

// Input -> the `limits` field that is its maxlength.
const TEXT_LIMITS = {
  "#create-title": "title_max_length",
  "#rm-title": "title_max_length",
  "#pf-title": "title_max_length",
  "#pf-desc": "description_max_length",
  "#cf-title": "title_max_length",
  "#rf-title": "title_max_length",
  "#lf-prize": "prize_max_length",
  "#lf-keyword": "keyword_max_length",
  "#announce-text": "announcement_max_length",
  "#reply-text": "chat_max_length",
};

/** Size the inputs by the room state's `limits` (nothing changes before it arrives). */
export function applyLimits(limits) {
  if (!limits) return;
  for (const [selector, name] of Object.entries(TEXT_LIMITS)) {
    if (Number.isFinite(limits[name])) $(selector).maxLength = limits[name];
  }
  if (Number.isFinite(limits.max_slow_mode_s)) $("#pol-slow-custom").max = String(limits.max_slow_mode_s);
  // The image size the upload takes: its help text (the catalogue reads the limit).
  applyImageLimit();
}
