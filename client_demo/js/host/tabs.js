// The workspace's tools, one at a time: the tab list (catalogue, sale, coupons,
// giveaway, auction, group deal, poll, questions, fans, settings, report) and its
// panels, as the ARIA tabs pattern has it: one tab in the Tab order (the selected
// one), Left / Right / Home / End move between tabs and show them, the panel
// follows. The live column and the chat never move: only the panel changes.
// Other modules open the tool they need with `showTab` (a sale prepared from the
// catalogue or the S shortcut, the report at the end of the show). The tool last
// shown is remembered for this tab of the browser.

import { $ } from "../util.js";

const LAST_KEY = "livesell.host.tab";
const DEFAULT_TAB = "catalogue";

// sessionStorage: a reload keeps the tool; another browser tab chooses its own.
function remembered() {
  try { return sessionStorage.getItem(LAST_KEY); } catch { return null; }
}
function remember(key) {
  try { sessionStorage.setItem(LAST_KEY, key); } catch { /* storage off: nothing kept */ }
}

const tabs = () => [...document.querySelectorAll("#tool-tabs [role=tab]")];

/** Show the tool `key` (a tab's data-tab); with `focus`, its tab takes the focus. */
export function showTab(key, { focus = false } = {}) {
  const all = tabs();
  const chosen = all.find((t) => t.dataset.tab === key) || all.find((t) => t.dataset.tab === DEFAULT_TAB);
  if (!chosen) return;
  for (const tab of all) {
    const on = tab === chosen;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    const panel = document.getElementById(tab.getAttribute("aria-controls"));
    if (panel) panel.hidden = !on;
  }
  remember(chosen.dataset.tab);
  if (focus) chosen.focus();
}

function onKey(e) {
  const all = tabs();
  const i = all.indexOf(e.target);
  if (i < 0 || e.altKey || e.ctrlKey || e.metaKey) return;
  let next = null;
  if (e.key === "ArrowRight") next = all[(i + 1) % all.length];
  else if (e.key === "ArrowLeft") next = all[(i - 1 + all.length) % all.length];
  else if (e.key === "Home") next = all[0];
  else if (e.key === "End") next = all[all.length - 1];
  if (!next) return;
  e.preventDefault();
  showTab(next.dataset.tab, { focus: true });
}

/** Wire the tab list once; the tool last shown in this browser tab comes back. */
export function bindTabs() {
  const list = $("#tool-tabs");
  list.addEventListener("click", (e) => {
    const tab = e.target.closest("[role=tab]");
    if (tab) showTab(tab.dataset.tab);
  });
  list.addEventListener("keydown", onKey);
  showTab(remembered() || DEFAULT_TAB);
}
