// The client against a server that speaks the protocol by hand (the ws
// package's server): the rules of docs/PROTOCOL.md seen from the wire.

import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { WebSocket, WebSocketServer, type RawData } from "ws";

import {
  Client,
  type ClientOptions,
  CloseError,
  CloseReason,
  Code,
  ConnectError,
  decodeEnvelope,
  encodeEnvelope,
  type Envelope,
  Kind,
  NetmsgError,
  requestType,
  messageType,
  type WebSocketConstructor,
} from "@netmsg/client";

import { delay, until } from "./server.js";

const WS = WebSocket as unknown as WebSocketConstructor;
const enc = new TextEncoder();
const dec = new TextDecoder();

const Echo = requestType<{ Text: string }, { Text: string }>("raw.Echo");
const Note = messageType<{ N: number }>("raw.Note");

/** A connection the hand-speaking server accepted. */
class Peer {
  readonly frames: (Envelope | string)[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  constructor(
    readonly ws: WebSocket,
    readonly protocol: string,
  ) {
    ws.on("message", (data: RawData, isBinary: boolean) => {
      const b = data as Buffer;
      this.frames.push(isBinary ? decodeEnvelope(new Uint8Array(b.buffer, b.byteOffset, b.byteLength)) : b.toString());
    });
    this.closed = new Promise((resolve) => ws.on("close", (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
  }

  send(e: Partial<Envelope> & { kind: Kind }): void {
    this.ws.send(encodeEnvelope(e));
  }

  /** Waits for the next envelope matching pred and takes it out of frames. */
  async take(pred: (e: Envelope) => boolean, timeoutMs = 5000): Promise<Envelope> {
    let found: Envelope | undefined;
    await until(
      () => {
        const i = this.frames.findIndex((f) => typeof f !== "string" && pred(f));
        if (i >= 0) found = this.frames.splice(i, 1)[0] as Envelope;
        return found !== undefined;
      },
      timeoutMs,
      "an envelope",
    );
    return found!;
  }

  envelopes(kind: Kind): Envelope[] {
    return this.frames.filter((f): f is Envelope => typeof f !== "string" && f.kind === kind);
  }
}

const servers: WebSocketServer[] = [];
const clients: Client[] = [];

/** Starts a hand-speaking server that selects protocol ("" selects none). */
async function rawServer(protocol = "netmsg.v2.json"): Promise<{ url: string; next: () => Promise<Peer> }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: () => protocol || false });
  servers.push(wss);
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const peers: Peer[] = [];
  wss.on("connection", (ws) => peers.push(new Peer(ws, ws.protocol)));
  const port = (wss.address() as AddressInfo).port;
  let taken = 0;
  return {
    url: `ws://127.0.0.1:${port}/`,
    next: async () => {
      await until(() => peers.length > taken, 5000, "a connection");
      return peers[taken++]!;
    },
  };
}

async function pair(options: ClientOptions = {}, protocol?: string): Promise<{ c: Client; p: Peer; errors: unknown[] }> {
  const srv = await rawServer(protocol);
  const errors: unknown[] = [];
  const c = new Client(srv.url, { WebSocket: WS, onError: (e) => errors.push(e), ...options });
  clients.push(c);
  await c.connect();
  return { c, p: await srv.next(), errors };
}

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  for (const s of servers) {
    for (const ws of s.clients) ws.terminate();
    await new Promise((resolve) => s.close(resolve));
  }
});

describe("negotiation", () => {
  test("the client offers netmsg.v2.json first, then netmsg.v1.json", async () => {
    let offered: string[] = [];
    const wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (set) => {
        offered = [...set];
        return "netmsg.v1.json";
      },
    });
    servers.push(wss);
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    const c = new Client(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { WebSocket: WS });
    clients.push(c);
    await c.connect();
    assert.deepEqual(offered, ["netmsg.v2.json", "netmsg.v1.json"]);
    assert.equal(c.session?.protocol, "netmsg.v1.json");
    assert.equal(c.session?.pings, false);
  });

  test("a server that selects no netmsg subprotocol is refused", async () => {
    const srv = await rawServer("");
    const c = new Client(srv.url, { WebSocket: WS });
    clients.push(c);
    const err = await c.connect().catch((e: unknown) => e);
    assert.ok(err instanceof ConnectError, String(err));
    // The ws package refuses it itself; browsers leave it to the client.
    assert.match(err.message, /selected subprotocol ""|sent no subprotocol/);
    assert.equal(c.state, "disconnected");
  });
});

describe("heartbeat", () => {
  test("PING envelopes every interval on revision 2, answered PONGs give the RTT", async () => {
    const { c, p } = await pair({ heartbeatInterval: 50, receiveTimeout: 0 });
    const ping = await p.take((e) => e.kind === Kind.Ping);
    p.send({ kind: Kind.Pong, id: ping.id, payload: ping.payload });
    await until(() => c.rtt > 0, 2000, "the RTT");
    await delay(300);
    assert.ok(p.envelopes(Kind.Ping).length >= 3, `${p.envelopes(Kind.Ping).length} more PINGs`);
  });

  test("no PING envelopes on revision 1", async () => {
    const { p } = await pair({ heartbeatInterval: 20 }, "netmsg.v1.json");
    await delay(300);
    assert.deepEqual(p.envelopes(Kind.Ping), []);
  });

  test("the client answers the server's PING with a PONG of the same id and payload", async () => {
    const { p } = await pair({ heartbeatInterval: 0 });
    const payload = new Uint8Array([9, 8, 7, 0, 255]);
    p.send({ kind: Kind.Ping, id: 2n ** 64n - 1n, payload });
    const pong = await p.take((e) => e.kind === Kind.Pong);
    assert.equal(pong.id, 2n ** 64n - 1n);
    assert.deepEqual([...pong.payload], [...payload]);
  });

  test("a silent server is a dead link: closed as connection lost within the receive timeout", async () => {
    const closes: CloseError[] = [];
    const start = Date.now();
    const { p } = await pair({ heartbeatInterval: 50, receiveTimeout: 400, onDisconnect: (ce) => closes.push(ce) });
    // The server never answers.
    await until(() => closes.length === 1, 3000, "the close");
    const took = Date.now() - start;
    assert.equal(closes[0]!.reason, CloseReason.ConnectionLost);
    assert.equal(closes[0]!.remote, false);
    assert.ok(took >= 400 && took < 400 + 50 + 1000, `took ${took} ms`);
    assert.ok(p.envelopes(Kind.Ping).length >= 4);
  });

  test("any frame counts as life", async () => {
    const closes: CloseError[] = [];
    const { p } = await pair({ heartbeatInterval: 50, receiveTimeout: 300, onDisconnect: (ce) => closes.push(ce) });
    const t = setInterval(() => p.send({ kind: Kind.Message, type: "raw.Unhandled", payload: enc.encode("{}") }), 100);
    await delay(1200);
    clearInterval(t);
    assert.deepEqual(closes, []);
  });

  test("on revision 1 the receive timeout is not enforced (the server cannot be probed)", async () => {
    const closes: CloseError[] = [];
    const { c } = await pair({ heartbeatInterval: 50, receiveTimeout: 200, onDisconnect: (ce) => closes.push(ce) }, "netmsg.v1.json");
    await delay(800);
    assert.deepEqual(closes, []);
    assert.equal(c.state, "connected");
  });
});

describe("protocol errors", () => {
  const cases: { name: string; send: (p: Peer) => void; text?: string }[] = [
    { name: "a malformed envelope", send: (p) => p.ws.send(new Uint8Array([0x08])) },
    { name: "kind unspecified", send: (p) => p.ws.send(new Uint8Array([0x10, 0x01])) },
    { name: "an unknown kind", send: (p) => p.ws.send(new Uint8Array([0x08, 0x09])) },
    { name: "a text frame", send: (p) => p.ws.send("hello") },
    { name: "a REQUEST with id 0", send: (p) => p.send({ kind: Kind.Request, type: "raw.Echo", payload: enc.encode("{}") }), text: "request id 0" },
  ];
  for (const tc of cases) {
    test(`${tc.name} closes the connection with 1002 and fails pending calls`, async () => {
      const closes: CloseError[] = [];
      const { c, p, errors } = await pair({ heartbeatInterval: 0, onDisconnect: (ce) => closes.push(ce) });
      const pending = c.request(Echo, { Text: "x" }).catch((e: unknown) => e);
      await p.take((e) => e.kind === Kind.Request);
      tc.send(p);
      const err = await pending;
      assert.ok(err instanceof CloseError, String(err));
      assert.equal(err.reason, CloseReason.ProtocolError);
      assert.equal(err.remote, false);
      const seen = await p.closed;
      assert.equal(seen.code, 1002);
      assert.equal(seen.reason, tc.text ?? "malformed envelope");
      assert.ok(errors.length >= 1);
      await until(() => closes.length === 1, 2000, "onDisconnect");
    });
  }

  test("an envelope over maxMessageSize closes with 1009", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0, maxMessageSize: 1024 });
    p.send({ kind: Kind.Message, type: "raw.Note", payload: new Uint8Array(2000) });
    const seen = await p.closed;
    assert.equal(seen.code, 1009);
    await until(() => c.state === "disconnected", 2000, "the close");
    const big = await c.request(Echo, { Text: "x".repeat(2000) }).catch((e: unknown) => e);
    assert.ok(big instanceof Error);
  });

  test("an outgoing envelope over maxMessageSize is refused, the connection lives on", async () => {
    const { c } = await pair({ heartbeatInterval: 0, maxMessageSize: 1024 });
    await assert.rejects(c.request(Echo, { Text: "x".repeat(2000) }), { name: "MessageTooLargeError" });
    await assert.rejects(c.send(Note, { N: 1, pad: "y".repeat(2000) } as { N: number }), { name: "MessageTooLargeError" });
    assert.equal(c.state, "connected");
  });
});

describe("bounded queues", () => {
  test("handlers falling behind past maxQueuedBytes: the envelope is dropped, counted, and the client closes as a slow consumer", async () => {
    const closes: CloseError[] = [];
    const { c, p, errors } = await pair({ heartbeatInterval: 0, maxQueuedBytes: 20_000, onDisconnect: (ce) => closes.push(ce) });
    let handled = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    c.on(Note, async () => {
      handled++;
      await gate;
    });
    const payload = enc.encode(JSON.stringify({ N: 1, Pad: "x".repeat(1000) }));
    for (let i = 0; i < 100; i++) p.send({ kind: Kind.Message, type: "raw.Note", payload });
    const seen = await p.closed;
    assert.equal(seen.code, 1013);
    assert.equal(seen.reason, "inbound queue full");
    await until(() => closes.length === 1, 2000, "onDisconnect");
    assert.equal(closes[0]!.reason, CloseReason.SlowConsumer);
    assert.equal(closes[0]!.remote, false);
    assert.equal(c.stats.droppedInbound, 1);
    // About 20 kB of envelopes were queued (1.3 kB each): the one that did
    // not fit was dropped, the rest still reach the handler.
    release();
    await until(() => handled >= 15, 2000, "the queued messages");
    assert.ok(handled <= 17, `handled ${handled}`);
    assert.ok(errors.some((e) => String(e).includes("bytes behind")));
  });

  test("a server that stops reading: unsent bytes past maxQueuedBytes close the client as a slow consumer", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0, maxQueuedBytes: 1 << 20, maxMessageSize: 1 << 20 });
    (p.ws as unknown as { _socket: { pause(): void } })._socket.pause(); // the server reads nothing from now on
    const big = "y".repeat(60_000);
    let err: unknown;
    let sent = 0;
    for (; sent < 2000 && err === undefined; sent++) {
      await c.send(Note, { N: sent, Pad: big } as { N: number }).catch((e: unknown) => (err = e));
    }
    assert.ok(err instanceof CloseError, `no error after ${sent} sends: ${String(err)}`);
    assert.equal(err.reason, CloseReason.SlowConsumer);
    assert.equal(err.text, "outbound queue full");
    assert.ok(sent > 16, `closed after ${sent} sends of 60 kB`);
    assert.equal(c.state, "disconnected");
  });
});

describe("requests from the server", () => {
  test("a duplicate in-flight id is answered ERROR 6, and the original still gets its RESPONSE", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0, concurrency: 4 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    c.handle(Echo, async (req) => {
      await gate;
      return { Text: req.Text };
    });
    p.send({ kind: Kind.Request, id: 7, type: "raw.Echo", payload: enc.encode('{"Text":"first"}') });
    p.send({ kind: Kind.Request, id: 7, type: "raw.Echo", payload: enc.encode('{"Text":"second"}') });
    const dup = await p.take((e) => e.id === 7);
    assert.equal(dup.kind, Kind.Error);
    assert.deepEqual(dup.error, { code: Code.AlreadyExists, message: "request id 7 is already in flight" });
    release();
    const resp = await p.take((e) => e.id === 7);
    assert.equal(resp.kind, Kind.Response);
    assert.deepEqual(JSON.parse(dec.decode(resp.payload)), { Text: "first" });
  });

  test("a payload that is no JSON is answered ERROR 3", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    c.handle(Echo, (req) => req);
    p.send({ kind: Kind.Request, id: 1, type: "raw.Echo", payload: enc.encode("{not json") });
    const e = await p.take((x) => x.id === 1);
    assert.equal(e.kind, Kind.Error);
    assert.equal(e.error?.code, Code.InvalidArgument);
    assert.match(e.error?.message ?? "", /^cannot decode raw\.Echo: /);
  });

  test("CANCEL aborts the handler and no answer is sent; a request cancelled while queued never runs", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0, concurrency: 1 });
    const ran: string[] = [];
    const reasons: string[] = [];
    c.handle(Echo, async (req, ctx) => {
      ran.push(req.Text);
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      reasons.push((ctx.signal.reason as Error).name);
      return { Text: "too late" };
    });
    p.send({ kind: Kind.Request, id: 1, type: "raw.Echo", payload: enc.encode('{"Text":"running"}') });
    p.send({ kind: Kind.Request, id: 2, type: "raw.Echo", payload: enc.encode('{"Text":"queued"}') });
    await until(() => ran.length === 1, 2000, "the first handler");
    p.send({ kind: Kind.Cancel, id: 2 });
    p.send({ kind: Kind.Cancel, id: 1 });
    p.send({ kind: Kind.Cancel, id: 99 }); // unknown: ignored
    await until(() => reasons.length === 1, 2000, "the abort");
    // A request after them is still served, in order, so both are done by then.
    p.send({ kind: Kind.Request, id: 3, type: "raw.Missing", payload: enc.encode("{}") });
    const three = await p.take((e) => e.id === 3);
    assert.equal(three.error?.code, Code.Unimplemented);
    assert.deepEqual(ran, ["running"]);
    assert.deepEqual(reasons, ["AbortError"]);
    assert.equal(p.envelopes(Kind.Response).length + p.envelopes(Kind.Error).length, 0);
  });

  test("timeout_ms becomes the handler's deadline and aborts its signal with a TimeoutError", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    let deadline: number | undefined;
    c.handle(Echo, async (_req, ctx) => {
      deadline = ctx.deadline;
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      throw ctx.signal.reason;
    });
    const sent = Date.now();
    p.send({ kind: Kind.Request, id: 4, type: "raw.Echo", payload: enc.encode('{"Text":"x"}'), timeoutMs: 150 });
    const e = await p.take((x) => x.id === 4);
    const took = Date.now() - sent;
    assert.deepEqual(e.error, { code: Code.DeadlineExceeded, message: "deadline exceeded" });
    assert.ok(deadline !== undefined && Math.abs(deadline - (sent + 150)) < 100, String(deadline));
    assert.ok(took >= 140 && took < 2000, `took ${took}`);
  });

  test("a far deadline (timeout_ms beyond setTimeout's range) does not abort the handler", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    c.handle(Echo, async (req, ctx) => {
      await delay(100);
      return { Text: ctx.signal.aborted ? "aborted" : req.Text };
    });
    const far = new Uint8Array([0x08, 0x02, 0x10, 0x08, 0x1a, 0x08, ...enc.encode("raw.Echo"), 0x22, 0x0c, ...enc.encode('{"Text":"x"}'), 0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    const env = decodeEnvelope(far);
    assert.equal(env.timeoutMs, Number.MAX_SAFE_INTEGER);
    p.ws.send(far);
    const resp = await p.take((e) => e.id === 8);
    assert.equal(resp.kind, Kind.Response);
    assert.deepEqual(JSON.parse(dec.decode(resp.payload)), { Text: "x" });
  });

  test("a MESSAGE's id is ignored; metadata reaches the handler", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    const got: [number, Record<string, string>][] = [];
    c.on(Note, (n, ctx) => void got.push([n.N, { ...ctx.metadata }]));
    p.send({ kind: Kind.Message, id: 5, type: "raw.Note", payload: enc.encode('{"N":1}'), metadata: { k: "v" } });
    await until(() => got.length === 1, 2000, "the message");
    assert.deepEqual(got, [[1, { k: "v" }]]);
  });
});

describe("requests to the server", () => {
  test("the REQUEST carries the type, JSON payload, timeout_ms and metadata", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    const call = c.request(Echo, { Text: "ü" }, { timeout: 2500, metadata: { traceparent: "00-1" } });
    const req = await p.take((e) => e.kind === Kind.Request);
    assert.equal(req.type, "raw.Echo");
    assert.deepEqual(JSON.parse(dec.decode(req.payload)), { Text: "ü" });
    assert.ok(req.timeoutMs > 2000 && req.timeoutMs <= 2500, String(req.timeoutMs));
    assert.deepEqual(req.metadata, { traceparent: "00-1" });
    p.send({ kind: Kind.Response, id: req.id, payload: enc.encode('{"Text":"back"}') });
    assert.deepEqual(await call, { Text: "back" });

    const none = c.request(Echo, { Text: "" }, { timeout: 0 });
    const req2 = await p.take((e) => e.kind === Kind.Request);
    assert.equal(req2.timeoutMs, 0);
    assert.notEqual(req2.id, req.id);
    p.send({ kind: Kind.Error, id: req2.id, error: { code: Code.ResourceExhausted, message: "full" } });
    const err = await none.catch((e: unknown) => e);
    assert.ok(err instanceof NetmsgError && err.code === Code.ResourceExhausted && err.rawMessage === "full");
  });

  test("a timeout beyond setTimeout's range is a far deadline, not an immediate one", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    const call = c.request(Echo, { Text: "x" }, { timeout: Number.MAX_SAFE_INTEGER });
    const req = await p.take((e) => e.kind === Kind.Request);
    assert.ok(req.timeoutMs > 2 ** 40, String(req.timeoutMs));
    await delay(100);
    p.send({ kind: Kind.Response, id: req.id, payload: enc.encode('{"Text":"fine"}') });
    assert.deepEqual(await call, { Text: "fine" });
  });

  test("on timeout a CANCEL follows, and the late answer is counted, not delivered", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    const err = await c.request(Echo, { Text: "x" }, { timeout: 100 }).catch((e: unknown) => e);
    assert.ok(err instanceof NetmsgError && err.code === Code.DeadlineExceeded);
    const req = await p.take((e) => e.kind === Kind.Request);
    const cancel = await p.take((e) => e.kind === Kind.Cancel);
    assert.equal(cancel.id, req.id);
    p.send({ kind: Kind.Response, id: req.id, payload: enc.encode('{"Text":"late"}') });
    p.send({ kind: Kind.Response, id: 12345, payload: enc.encode("{}") });
    await until(() => c.stats.lateResponses === 1 && c.stats.unknownResponses === 1, 2000, "the counters");
  });

  test("a response that is no JSON fails the call with InvalidArgument", async () => {
    const { c, p } = await pair({ heartbeatInterval: 0 });
    const call = c.request(Echo, { Text: "x" }).catch((e: unknown) => e);
    const req = await p.take((e) => e.kind === Kind.Request);
    p.send({ kind: Kind.Response, id: req.id, payload: enc.encode("<html>") });
    const err = await call;
    assert.ok(err instanceof NetmsgError && err.code === Code.InvalidArgument, String(err));
  });
});
