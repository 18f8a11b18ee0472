// Reconnecting against the real Go server: a graceful restart with the
// server's reconnect hint, a crash, wait-for-ready and fail-fast, onConnect
// before queued calls, and a dead link found by the PING heartbeat.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, test } from "node:test";
import { WebSocket } from "ws";

import {
  Client,
  type ClientOptions,
  CloseError,
  CloseReason,
  Code,
  ConnectError,
  NotConnectedError,
  type WebSocketConstructor,
} from "@netmsg/client";

import { Chat, WeatherRequest } from "./gen/contract.js";
import { EchoRequest } from "./gen/testcontract.js";
import { delay, startServer, type TestServer, until } from "./server.js";

const WS = WebSocket as unknown as WebSocketConstructor;

/** Runs f with a fresh server and closes what it made. */
async function withServer(f: (srv: TestServer, client: (url: string, o?: ClientOptions) => Client) => Promise<void>): Promise<void> {
  const srv = await startServer();
  const clients: Client[] = [];
  const client = (url: string, o: ClientOptions = {}) => {
    const c = new Client(url, { WebSocket: WS, onError: () => {}, ...o });
    clients.push(c);
    return c;
  };
  try {
    await f(srv, client);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await srv.stop();
  }
}

/** A loopback port nothing listens on (for now). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe("reconnect", () => {
  test("after a graceful restart: 1001 with the hint as a floor under the jittered delay, onConnect before queued calls", async () => {
    await withServer(async (srv, client) => {
      const events: string[] = [];
      const closes: CloseError[] = [];
      const delays: number[] = [];
      let disconnectedAt = 0;
      let connectedAt = 0;
      const c = client(srv.url, {
        reconnect: { initialDelay: 50, jitter: 0.5 },
        onDisconnect: (ce) => {
          closes.push(ce);
          disconnectedAt = Date.now();
          events.push("disconnected");
        },
        onReconnecting: (n, d) => {
          delays.push(d);
          events.push(`reconnecting ${n}`);
        },
        onConnect: async (session) => {
          events.push("onConnect begins");
          // Calls on the session OnConnect is given go through at once.
          const r = await session.request(EchoRequest, { Text: "set up" });
          await delay(200);
          events.push(`onConnect ends (${r.Text})`);
          connectedAt = Date.now();
        },
      });
      await c.connect();
      assert.deepEqual(events, ["onConnect begins", "onConnect ends (set up)"]);
      events.length = 0;

      await srv.control("restart", { downMs: "100" });
      await until(() => closes.length === 1, 5000, "the disconnect");
      const ce = closes[0]!;
      assert.equal(ce.reason, CloseReason.ServerShutdown);
      assert.equal(ce.code, 1001);
      assert.equal(ce.text, "server shutting down; reconnect-after=500ms");
      assert.equal(ce.reconnectAfter, 500);
      assert.equal(c.state, "connecting");

      // Wait-for-ready: a call made now waits for the connection and for
      // onConnect, then goes through.
      const queued = c.request(WeatherRequest, { City: "Lisbon" }).then((r) => {
        events.push("queued call answered");
        return r;
      });
      assert.equal((await queued).Forecast, "sunny");
      assert.deepEqual(events, ["disconnected", "reconnecting 1", "onConnect begins", "onConnect ends (set up)", "queued call answered"]);
      assert.ok(delays[0]! >= 500 + 25 && delays[0]! <= 500 + 75, `first delay ${delays[0]}`);
      const gap = connectedAt - disconnectedAt;
      assert.ok(gap >= 500, `reconnected ${gap} ms after the close`);
      assert.equal(c.state, "connected");
    });
  });

  test("after a crash: the server restarts on its port, the client comes back on its backoff", async () => {
    let srv = await startServer();
    const addr = srv.addr;
    const closes: CloseError[] = [];
    const attempts: number[] = [];
    const c = new Client(srv.url, {
      WebSocket: WS,
      reconnect: { initialDelay: 100, multiplier: 1.5, maxDelay: 400 },
      onDisconnect: (ce) => closes.push(ce),
      onReconnecting: (n) => attempts.push(n),
      onError: () => {},
    });
    try {
      await c.connect();
      await srv.kill();
      await until(() => closes.length === 1, 5000, "the disconnect");
      assert.equal(closes[0]!.reason, CloseReason.NetworkError);
      assert.equal(closes[0]!.code, 1006);
      assert.equal(closes[0]!.remote, true);
      await delay(600); // a few attempts fail while nothing listens
      srv = await startServer({ addr });
      const w = await c.request(WeatherRequest, { City: "Oslo" }, { timeout: 10_000 });
      assert.equal(w.Forecast, "snow showers");
      assert.ok(attempts.length >= 2, `attempts ${attempts.join(",")}`);
      assert.deepEqual(
        attempts,
        attempts.map((_, i) => i + 1),
      );
    } finally {
      await c.close();
      await srv.stop();
    }
  });

  test("fail-fast calls fail at once while reconnecting; wait-for-ready calls end at their timeout", async () => {
    await withServer(async (srv, client) => {
      const fast = client(srv.url, { reconnect: { initialDelay: 50 }, failFast: true });
      const ready = client(srv.url, { reconnect: { initialDelay: 50 } });
      await fast.connect();
      await ready.connect();
      await srv.control("restart", { downMs: "1500" });
      await until(() => fast.state === "connecting" && ready.state === "connecting", 5000, "both to lose the connection");

      let start = Date.now();
      const e1 = await fast.request(WeatherRequest, { City: "Bonn" }).catch((e: unknown) => e);
      assert.ok(e1 instanceof NotConnectedError, String(e1));
      assert.equal(e1.code, Code.Unavailable);
      assert.ok(Date.now() - start < 100);

      start = Date.now();
      const e2 = await ready.request(WeatherRequest, { City: "Bonn" }, { timeout: 200 }).catch((e: unknown) => e);
      const took = Date.now() - start;
      assert.ok(e2 instanceof NotConnectedError, String(e2));
      assert.equal(e2.code, Code.DeadlineExceeded);
      assert.ok(took >= 190 && took < 1000, `took ${took}`);

      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const e3 = await ready.send(Chat, { From: "t", Text: "waiting" }, { signal: ac.signal, timeout: 5000 }).catch((e: unknown) => e);
      assert.ok(e3 instanceof NotConnectedError && e3.code === Code.Canceled, String(e3));

      // Both come back.
      assert.equal((await ready.request(WeatherRequest, { City: "Bonn" }, { timeout: 10_000 })).City, "Bonn");
      await until(() => fast.state === "connected", 10_000, "the fail-fast client to reconnect");
      assert.equal((await fast.request(WeatherRequest, { City: "Bonn" })).City, "Bonn");
    });
  });

  test("connect() with reconnect retries the first connection until the server is there", async () => {
    const port = await freePort();
    const attempts: number[] = [];
    const c = new Client(`ws://127.0.0.1:${port}/ws`, {
      WebSocket: WS,
      reconnect: { initialDelay: 50, maxDelay: 200 },
      onReconnecting: (n) => attempts.push(n),
    });
    let srv: TestServer | undefined;
    try {
      const connecting = c.connect();
      await delay(400);
      assert.equal(c.state, "connecting");
      srv = await startServer({ addr: `127.0.0.1:${port}` });
      await connecting;
      assert.equal(c.state, "connected");
      assert.ok(attempts.length >= 2, `attempts ${attempts.join(",")}`);
    } finally {
      await c.close();
      await srv?.stop();
    }
  });

  test("connect() without reconnect fails at once; close() during the backoff ends the client", async () => {
    const port = await freePort();
    const once = new Client(`ws://127.0.0.1:${port}/ws`, { WebSocket: WS });
    const err = await once.connect().catch((e: unknown) => e);
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(once.state, "disconnected");

    const c = new Client(`ws://127.0.0.1:${port}/ws`, { WebSocket: WS, reconnect: { initialDelay: 10_000 } });
    const connecting = c.connect().catch((e: unknown) => e);
    await delay(100);
    const waiting = c.request(WeatherRequest, { City: "Bonn" }).catch((e: unknown) => e);
    await c.close();
    const [e1, e2] = (await Promise.all([connecting, waiting])) as unknown[];
    assert.ok(e1 instanceof CloseError && e1.reason === CloseReason.Normal, String(e1));
    assert.ok(e2 instanceof CloseError, String(e2));
    assert.equal(c.state, "closed");
    await c.done;
  });
});

describe("heartbeat against the Go server", () => {
  test("PING envelopes keep an idle link up; a blackholed link is found within the receive timeout and replaced", async () => {
    await withServer(async (srv, client) => {
      const closes: CloseError[] = [];
      const interval = 100;
      const receiveTimeout = 800;
      const c = client(srv.relayUrl, {
        heartbeatInterval: interval,
        receiveTimeout,
        reconnect: { initialDelay: 50 },
        onDisconnect: (ce) => closes.push(ce),
      });
      await c.connect();
      assert.equal(c.session?.protocol, "netmsg.v2.json");
      assert.equal(c.session?.pings, true);
      await delay(3 * receiveTimeout);
      assert.equal(closes.length, 0, `an idle link must stay up: ${closes.join(", ")}`);
      assert.ok(c.rtt > 0, `rtt ${c.rtt}`);

      const cut = Date.now();
      await srv.control("blackhole");
      await until(() => closes.length === 1, 10 * receiveTimeout, "the dead link to be noticed");
      const took = Date.now() - cut;
      assert.equal(closes[0]!.reason, CloseReason.ConnectionLost);
      assert.ok(took >= receiveTimeout - interval && took <= receiveTimeout + 2 * interval + 500, `noticed after ${took} ms`);
      const w = await c.request(WeatherRequest, { City: "Bonn" }, { timeout: 10_000 });
      assert.equal(w.City, "Bonn");
    });
  });
});
