// The Node reference hub for `livesell-loadtest bench`: the `ws` library with a
// pre-built buffer sent to each client (`clients.forEach(c => c.send(buf))`).
// Same control protocol as loadtest/refhub.py: viewers connect to "/", the bench
// to "/control" and sends {"rate": R, "duration": D, "size": S}; the hub
// broadcasts R events a second for D seconds and answers {"done", "clients"}.
"use strict";
const { WebSocketServer } = require("ws");

const viewers = new Set();
const TEXT = { binary: false }; // a Buffer is sent as a binary frame unless told
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });

function event(seq, size) {
  const body = { seq, type: "announcement", text: "", ts: Date.now() };
  body.text = "x".repeat(Math.max(0, size - JSON.stringify(body).length));
  return Buffer.from(JSON.stringify(body));
}

function emit(rate, duration, size, done) {
  const count = Math.floor(rate * duration);
  const start = Date.now();
  let n = 0;
  const tick = () => {
    while (n < count && Date.now() >= start + (n * 1000) / rate) {
      const buf = event(n + 1, size);
      viewers.forEach((c) => c.send(buf, TEXT));
      n += 1;
    }
    if (n < count) setTimeout(tick, Math.max(0, start + (n * 1000) / rate - Date.now()));
    else done(count);
  };
  tick();
}

wss.on("connection", (ws, req) => {
  if (req.url === "/control") {
    ws.on("message", (raw) => {
      const cmd = JSON.parse(raw);
      emit(cmd.rate, cmd.duration, cmd.size, (sent) =>
        ws.send(JSON.stringify({ done: sent, clients: viewers.size })));
    });
    return;
  }
  viewers.add(ws);
  ws.on("close", () => viewers.delete(ws));
  ws.on("error", () => viewers.delete(ws));
});

wss.on("listening", () => console.log(`PORT ${wss.address().port}`));
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
