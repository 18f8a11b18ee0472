// The browser test's scenario: loaded by index.html in headless Chromium, it
// runs the client with the browser's own WebSocket against the Go test
// server and posts what it saw to /result, which the server prints for the
// node test (browser.test.ts) to check.

import { Client, CloseError, CloseReason, Code, NetmsgError } from "@netmsg/client";

import { Chat, Notice, SlowRequest, WeatherRequest } from "../gen/contract.js";
import { AddRequest, AskRequest, CloseRequest, ObserveRequest, PushRequest } from "../gen/testcontract.js";

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

const checks: Check[] = [];
const logEl = document.getElementById("log");

function check(name: string, ok: boolean, detail: unknown = ""): void {
  const d = typeof detail === "string" ? detail : JSON.stringify(detail);
  checks.push({ name, ok, detail: d });
  const line = `${ok ? "ok  " : "FAIL"} ${name}${d ? ": " + d : ""}`;
  console.log(line);
  if (logEl) logEl.textContent += line + "\n";
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(10);
  }
  return true;
}

async function control(name: string, query = ""): Promise<void> {
  const res = await fetch(`/control/${name}${query}`, { method: "POST" });
  if (!res.ok) throw new Error(`control ${name}: ${res.status}`);
}

async function scenario(): Promise<void> {
  const relay = new URLSearchParams(location.search).get("relay");
  if (!relay) throw new Error("the page needs ?relay=host:port");
  const heartbeatInterval = 200;
  const receiveTimeout = 1500;
  const closes: CloseError[] = [];
  const delays: number[] = [];
  let connects = 0;
  const client = new Client(`ws://${relay}/ws`, {
    heartbeatInterval,
    receiveTimeout,
    reconnect: { initialDelay: 100, maxDelay: 1000 },
    onDisconnect: (ce) => closes.push(ce),
    onReconnecting: (_attempt, delay) => delays.push(delay),
    onConnect: () => {
      connects++;
    },
    onError: (err) => console.log("onError:", String(err)),
  });
  const notices: string[] = [];
  client.on(Notice, (n) => {
    notices.push(n.Text);
  });
  client.handle(AddRequest, (req, ctx) => ({ Sum: req.A + req.B, Metadata: { ...ctx.metadata, from: "browser" } }));

  await client.connect();
  const s = client.session;
  check("connected with the browser's WebSocket", client.state === "connected" && s !== undefined, s?.protocol ?? "");
  check("revision 2 negotiated (PING envelopes)", s?.protocol === "netmsg.v2.json" && s.pings === true, s?.protocol ?? "");

  const w = await client.request(WeatherRequest, { City: "Bonn" });
  check("typed request", w.Forecast === "light rain" && w.TempC === 11.5, w);

  const nf = await client.request(WeatherRequest, { City: "Atlantis" }).catch((e: unknown) => e);
  check("error with its Go code", nf instanceof NetmsgError && nf.code === Code.NotFound, String(nf));

  await client.send(Chat, { From: "browser", Text: "hi" });
  const pushed = await client.request(PushRequest, { Count: 20, Text: "push" });
  const gotAll = await until(() => notices.length === 21, 5000);
  check(
    "server push, in order",
    gotAll && pushed.Sent === 20 && notices[0] === "browser said hi" && notices[20] === "push 20",
    notices.slice(0, 3).concat(notices.slice(-1)),
  );

  const ask = await client.request(AskRequest, { Add: { A: 20, B: 22 }, TimeoutMs: 2000, CancelAfterMs: 0 });
  check("server-to-browser request answered by a TS handler", ask.Code === 0 && ask.Sum === 42 && ask.Metadata?.["asked-by"] === "testserver", ask);

  const slow = await client.request(SlowRequest, { Delay: 10e9 }, { timeout: 200 }).catch((e: unknown) => e);
  check("request timeout", slow instanceof NetmsgError && slow.code === Code.DeadlineExceeded, String(slow));
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  const aborted = await client.request(SlowRequest, { Delay: 10e9 }, { timeout: 0, signal: ac.signal }).catch((e: unknown) => e);
  check("abort", aborted instanceof NetmsgError && aborted.code === Code.Canceled, String(aborted));

  // An idle link stays up: PONGs (and the server's pings, answered by the
  // browser) keep both ends' receive timeouts satisfied.
  await sleep(3 * receiveTimeout);
  check("idle link survives several receive timeouts", client.state === "connected" && closes.length === 0 && client.rtt > 0, {
    state: client.state,
    closes: closes.map(String),
    rtt: client.rtt,
  });
  const seen = await client.request(ObserveRequest, {});
  check("the server measures the browser's liveness (ping RTT)", seen.RTTNs > 0, { rttNs: seen.RTTNs });

  // A dead link: the relay stops forwarding, nothing arrives, and the
  // client notices within its receive timeout and reconnects.
  const before = closes.length;
  const cut = Date.now();
  await control("blackhole");
  const lost = await until(() => closes.length > before, receiveTimeout * 4);
  const took = Date.now() - cut;
  const ce = closes[before];
  check(
    "dead link noticed within the receive timeout",
    lost && ce?.reason === CloseReason.ConnectionLost && took <= receiveTimeout + 2 * heartbeatInterval + 1000,
    { took, reason: ce?.reason, text: ce?.text },
  );
  const back = await client.request(WeatherRequest, { City: "Oslo" }, { timeout: 10_000 }).catch((e: unknown) => e);
  check("reconnected after the dead link (wait-for-ready)", !(back instanceof Error) && client.state === "connected", String(back instanceof Error ? back : "ok"));

  // The server closes with a reason text; the client reconnects.
  const n1 = closes.length;
  await client.request(CloseRequest, { Mode: "close", Text: "see you", DelayMs: 20 });
  await until(() => closes.length > n1, 5000);
  const c1 = closes[n1];
  check("close reason from the server", c1?.reason === CloseReason.PeerNormal && c1.code === 1000 && c1.text === "see you" && c1.remote, String(c1));

  // The server restarts: 1001 with a reconnect hint, honoured as a floor.
  await until(() => client.state === "connected", 10_000);
  const n2 = closes.length;
  const d2 = delays.length;
  await control("restart", "?downMs=200");
  await until(() => closes.length > n2, 5000);
  const c2 = closes[n2];
  check("server shutdown with a reconnect hint", c2?.reason === CloseReason.ServerShutdown && c2.code === 1001 && c2.reconnectAfter === 500, String(c2));
  const w2 = await client.request(WeatherRequest, { City: "Lisbon" }, { timeout: 10_000 }).catch((e: unknown) => e);
  const firstDelay = delays[d2] ?? 0;
  check("reconnected after the restart, the hint a floor under the delay", !(w2 instanceof Error) && firstDelay >= 500, { firstDelay, w2: String(w2) });
  check("onConnect ran for every connection", connects === 4, { connects });

  await client.close();
  check("closed", client.state === "closed", client.state);

  // Close frames cross PINGs: the server's close must reach the page with
  // its code and text every time (a second close frame after it, gws's
  // answer to the page's reply, once made Chromium report 1006).
  const seenCodes: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    let ce: CloseError | undefined;
    const c = new Client(`ws://${location.host}/ws`, { heartbeatInterval: 2, onDisconnect: (e) => (ce = e) });
    await c.connect();
    await c.request(CloseRequest, { Mode: "close", Text: "bye", DelayMs: 5 });
    await until(() => ce !== undefined, 5000);
    const k = `${ce?.code} ${ce?.text}`;
    seenCodes[k] = (seenCodes[k] ?? 0) + 1;
    await c.close();
  }
  check("40 server closes under PING traffic all arrive as 1000 with their text", seenCodes["1000 bye"] === 40, seenCodes);
}

async function report(): Promise<void> {
  try {
    await scenario();
  } catch (err) {
    check("scenario ran to the end", false, err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err));
  }
  await fetch("/result", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ userAgent: navigator.userAgent, checks }),
  });
}

void report();
