// The live numbers: GET /api/rooms/{room}/stats once a second (viewers, likes,
// chat rate, holds, orders, revenue, conversion, per-product counters) and the
// two inline-SVG charts of viewers and orders.

import { $, compact, money, setText } from "../util.js";
import { updateRow } from "./catalogue.js";
import { putSale } from "./sale.js";
import { S, currencyOf, hostApi } from "./state.js";

const MAX_SAMPLES = 300;
let statsTimer = null;
let statsBusy = false;

export function stopStats() {
  clearTimeout(statsTimer);
  statsTimer = null;
}

export async function pollStats() {
  clearTimeout(statsTimer);
  if (!S.roomId) return;
  if (!statsBusy) {
    statsBusy = true;
    const roomAtStart = S.roomId;
    const res = await hostApi("GET", "/stats");
    statsBusy = false;
    if (roomAtStart !== S.roomId) return;
    if (res.ok) {
      S.stats = res.data;
      S.statsAt = Date.now();
      S.samples.push({ t: res.data.server_time, viewers: res.data.viewers.now, orders: res.data.orders });
      if (S.samples.length > MAX_SAMPLES) S.samples.shift();
      renderStats();
    } else {
      setText($("#stats-age"), `Numbers unavailable: ${res.error.message}`);
    }
  }
  statsTimer = setTimeout(pollStats, 1000);
}

function renderStats() {
  const st = S.stats;
  if (!st) return;
  const cur = currencyOf();
  setText($("#st-viewers"), compact(st.viewers.now));
  setText($("#st-peak"), `peak ${compact(st.viewers.peak)}`);
  setText($("#st-likes"), compact(st.likes));
  setText($("#st-unique"), `${compact(st.viewers.unique)} unique viewers`);
  setText($("#st-chat"), compact(st.chat_per_minute));
  setText($("#st-chat-now"), `${compact(st.chat_this_minute)} this min`);
  setText($("#st-holds"), compact(st.holds_units));
  setText($("#st-orders"), compact(st.orders));
  setText($("#st-units"), `${compact(st.units_sold)} unit${st.units_sold === 1 ? "" : "s"}`);
  setText($("#st-revenue"), money(st.revenue, cur));
  setText($("#st-buyers"), `${compact(st.buyers)} buyer${st.buyers === 1 ? "" : "s"}`);
  setText($("#st-conversion"), `${(st.conversion * 100).toFixed(1)}%`);
  setText($("#stats-age"), `Updated ${new Date().toLocaleTimeString()}`);
  // The per-product numbers of the stats call are the freshest counters: fold them
  // in. Its sale views may be older than an event already shown (putSale keeps
  // the newer state).
  for (const sp of st.products) {
    const p = S.products.get(sp.product_id);
    if (p) {
      p.stock = { total: sp.total, left: sp.left, held: sp.held, sold: sp.sold };
      if (sp.sale) putSale(sp.sale);
      else updateRow(sp.product_id);
    }
  }
  const spanText = S.samples.length > 60 ? `last ${Math.ceil(S.samples.length / 60)} minutes` : "last minute";
  setText($("#chart-viewers-span"), spanText);
  setText($("#chart-orders-span"), `cumulative, ${spanText}`);
  drawChart($("#chart-viewers"), S.samples.map((s) => s.viewers), "viewers");
  drawChart($("#chart-orders"), S.samples.map((s) => s.orders), "orders");
}

/** A small line chart drawn as inline SVG: grid, filled area, line, last point. */
function drawChart(svg, values, kind) {
  const W = 400, H = 110, pad = 8;
  svg.classList.add(kind);
  const max = Math.max(1, ...values);
  // The newest sample sits at the right edge; the window grows from one minute to five.
  const span = Math.min(MAX_SAMPLES, Math.max(60, values.length));
  const offset = span - values.length;
  const px = (i) => ((i + offset) / (span - 1)) * W;
  const py = (v) => H - pad - (v / max) * (H - 2 * pad);
  const parts = [];
  for (let g = 0; g <= 3; g++) {
    const y = pad + (g / 3) * (H - 2 * pad);
    parts.push(`<line class="grid" x1="0" x2="${W}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}"/>`);
  }
  if (values.length) {
    const pts = values.map((v, i) => `${px(i).toFixed(1)},${py(v).toFixed(1)}`);
    const first = px(0).toFixed(1);
    parts.push(`<path class="area" d="M${first},${H} L${pts.join(" L")} L${W},${H} Z"/>`);
    parts.push(`<polyline class="line" points="${pts.join(" ")}"/>`);
  }
  // Only numbers go into this markup; nothing from users or the server's text fields.
  svg.innerHTML = parts.join("");
  const last = values.length ? values[values.length - 1] : 0;
  svg.setAttribute("aria-label", `${kind === "viewers" ? "Viewers" : "Orders"} over the last ${Math.round(values.length)} seconds: now ${last}, highest ${Math.max(0, ...values)}`);
  svg.dataset.points = String(values.length);
}
