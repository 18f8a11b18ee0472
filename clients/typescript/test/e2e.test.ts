// End-to-end tests against the real Go server (testserver), with the ws
// package as the WebSocket of Node 20.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";

import {
  Client,
  type ClientOptions,
  CloseError,
  CloseReason,
  Code,
  codeOf,
  NetmsgError,
  NotConnectedError,
  requestType,
  type WebSocketConstructor,
} from "@netmsg/client";

import { Chat, Notice, SlowRequest, WeatherRequest } from "./gen/contract.js";
import {
  AddRequest,
  AskRequest,
  CloseRequest,
  EchoRequest,
  FailRequest,
  ObserveRequest,
  PushRequest,
} from "./gen/testcontract.js";
import { delay, startServer, type TestServer, until } from "./server.js";

const WS = WebSocket as unknown as WebSocketConstructor;

let srv: TestServer;
const clients: Client[] = [];

function newClient(url: string, options: ClientOptions = {}): Client {
  const c = new Client(url, { WebSocket: WS, onError: () => {}, ...options });
  clients.push(c);
  return c;
}

async function connected(options: ClientOptions = {}): Promise<Client> {
  const c = newClient(srv.url, options);
  await c.connect();
  return c;
}

before(async () => {
  srv = await startServer();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await srv.stop();
});

describe("requests to the server", () => {
  test("a typed request resolves with the typed response", async () => {
    const c = await connected();
    const resp = await c.request(WeatherRequest, { City: "Bonn" });
    assert.deepEqual(resp, { City: "Bonn", Forecast: "light rain", TempC: 11.5 });
    assert.equal(c.state, "connected");
  });

  test("a handler's error arrives with its Go code and message", async () => {
    const c = await connected();
    const err = await c.request(WeatherRequest, { City: "Atlantis" }).catch((e: unknown) => e);
    assert.ok(err instanceof NetmsgError, String(err));
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, 'no forecast for "Atlantis"');
    assert.equal(err.message, 'netmsg: not_found: no forecast for "Atlantis"');
    assert.equal(codeOf(err), Code.NotFound);

    const cases: { req: { Code: number; Message: string; Plain: boolean; Panic: boolean }; code: number; msg: string }[] = [
      { req: { Code: Code.FailedPrecondition, Message: "not yet", Plain: false, Panic: false }, code: 9, msg: "not yet" },
      { req: { Code: 0, Message: "", Plain: true, Panic: false }, code: 13, msg: "internal error" },
      { req: { Code: 0, Message: "", Plain: false, Panic: true }, code: 13, msg: "internal error" },
      { req: { Code: 42, Message: "a code this client does not name", Plain: false, Panic: false }, code: 42, msg: "a code this client does not name" },
    ];
    for (const tc of cases) {
      const e = await c.request(FailRequest, tc.req).catch((x: unknown) => x);
      assert.ok(e instanceof NetmsgError, String(e));
      assert.equal(e.code, tc.code);
      assert.equal(e.rawMessage, tc.msg);
    }
  });

  test("a request for a type the server does not handle fails with Unimplemented at once", async () => {
    const c = await connected();
    const Missing = requestType<{ X: number }, { Y: number }>("nowhere.Missing");
    const start = Date.now();
    const err = await c.request(Missing, { X: 1 }).catch((e: unknown) => e);
    assert.ok(err instanceof NetmsgError);
    assert.equal(err.code, Code.Unimplemented);
    assert.equal(err.rawMessage, "no handler for nowhere.Missing");
    assert.ok(Date.now() - start < 2000);
  });

  test("the deadline travels as timeout_ms and metadata both ways", async () => {
    const c = await connected();
    const resp = await c.request(EchoRequest, { Text: "hi" }, { timeout: 4000, metadata: { traceparent: "00-abc-01", "x-user": "ü" } });
    assert.equal(resp.Text, "hi");
    assert.deepEqual(resp.Metadata, { traceparent: "00-abc-01", "x-user": "ü" });
    assert.ok(resp.DeadlineMs > 2000 && resp.DeadlineMs <= 4000, `deadline ${resp.DeadlineMs}`);

    const none = await c.request(EchoRequest, { Text: "no deadline" }, { timeout: 0 });
    assert.equal(none.DeadlineMs, 0);
    assert.equal(none.Metadata, undefined);
  });

  test("a timeout fails the call, and the server's handler stops", async () => {
    const c = await connected();
    const start = Date.now();
    const err = await c.request(SlowRequest, { Delay: 10e9 }, { timeout: 300 }).catch((e: unknown) => e);
    const took = Date.now() - start;
    assert.ok(err instanceof NetmsgError, String(err));
    assert.equal(err.code, Code.DeadlineExceeded);
    // Whichever comes first: the client's own timer, or the server's handler
    // answering once the deadline it was sent (timeout_ms) has passed.
    assert.ok(["request contract.SlowRequest timed out", "deadline exceeded"].includes(err.rawMessage), err.rawMessage);
    assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
    let ends: string[] = [];
    await untilAsync(async () => {
      ends = (await c.request(ObserveRequest, {})).SlowEnds ?? [];
      return ends.length > 0;
    }, 5000, "the slow handler to end");
    assert.ok(ends.every((e) => e !== "finished"), ends.join(","));
  });

  test("aborting sends CANCEL: the server's handler is cancelled", async () => {
    const c = await connected();
    const before = (await c.request(ObserveRequest, {})).SlowEnds?.length ?? 0;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    // No deadline: only the CANCEL can end the server's handler.
    const err = await c.request(SlowRequest, { Delay: 60e9 }, { timeout: 0, signal: ac.signal }).catch((e: unknown) => e);
    assert.ok(err instanceof NetmsgError, String(err));
    assert.equal(err.code, Code.Canceled);
    assert.equal(err.rawMessage, "request contract.SlowRequest canceled");
    let ends: string[] = [];
    await untilAsync(async () => {
      ends = (await c.request(ObserveRequest, {})).SlowEnds ?? [];
      return ends.length > before;
    }, 5000, "the slow handler to be cancelled");
    assert.equal(ends[ends.length - 1], "context canceled");

    const pre = new AbortController();
    pre.abort();
    const e2 = await c.request(WeatherRequest, { City: "Bonn" }, { signal: pre.signal }).catch((e: unknown) => e);
    assert.ok(e2 instanceof NetmsgError && e2.code === Code.Canceled);
  });
});

describe("from the server", () => {
  test("messages both ways, in order", async () => {
    const c = await connected();
    const got: string[] = [];
    c.on(Notice, (n) => {
      got.push(n.Text);
    });
    await c.send(Chat, { From: "ts", Text: "hello" });
    await until(() => got.length === 1, 5000, "the notice");
    assert.equal(got[0], "ts said hello");
    const sent = await c.request(PushRequest, { Count: 200, Text: "n" });
    assert.equal(sent.Sent, 200);
    await until(() => got.length === 201, 5000, "200 notices");
    assert.deepEqual(got.slice(1), Array.from({ length: 200 }, (_, i) => "n " + (i + 1)));
  });

  test("several message handlers run in registration order; remove unregisters", async () => {
    const c = await connected();
    const seen: string[] = [];
    const r1 = c.on(Notice, () => void seen.push("a"));
    c.on(Notice, () => void seen.push("b"));
    await c.request(PushRequest, { Count: 1, Text: "x" });
    await until(() => seen.length === 2, 5000, "two handlers");
    r1();
    await c.request(PushRequest, { Count: 1, Text: "x" });
    await until(() => seen.length === 3, 5000, "one handler");
    assert.deepEqual(seen, ["a", "b", "b"]);
  });

  test("the server's requests are answered by TypeScript handlers, errors mapped to Go codes", async () => {
    const errors: unknown[] = [];
    const c = await connected({ onError: (e) => errors.push(e) });
    const aborts: string[] = [];
    c.handle(AddRequest, async (req, ctx) => {
      if (req.SleepMs) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, req.SleepMs);
          ctx.signal.addEventListener("abort", () => {
            clearTimeout(t);
            aborts.push(`${(ctx.signal.reason as Error).name} deadline=${ctx.deadline !== undefined}`);
            reject(ctx.signal.reason);
          });
        });
      }
      if (req.Throw) throw new Error("a plain error the server must not see");
      if (req.FailCode) throw new NetmsgError(req.FailCode, req.FailMessage ?? "");
      return { Sum: req.A + req.B, Metadata: { ...ctx.metadata } };
    });
    assert.throws(() => c.handle(AddRequest, () => ({ Sum: 0 })), /already/);

    const ok = await c.request(AskRequest, { Add: { A: 2, B: 3 }, TimeoutMs: 0, CancelAfterMs: 0 });
    assert.equal(ok.Code, 0, ok.Message);
    assert.equal(ok.Sum, 5);
    assert.deepEqual(ok.Metadata, { "asked-by": "testserver" });

    const coded = await c.request(AskRequest, { Add: { A: 1, B: 1, FailCode: Code.PermissionDenied, FailMessage: "not you" }, TimeoutMs: 0, CancelAfterMs: 0 });
    assert.equal(coded.Code, Code.PermissionDenied);
    assert.equal(coded.Message, "netmsg: permission_denied: not you");

    const plain = await c.request(AskRequest, { Add: { A: 1, B: 1, Throw: true }, TimeoutMs: 0, CancelAfterMs: 0 });
    assert.equal(plain.Code, Code.Internal);
    assert.equal(plain.Message, "netmsg: internal: internal error");
    assert.ok(errors.some((e) => e instanceof Error && e.message === "a plain error the server must not see"));

    // The server's deadline reaches the handler's signal.
    const late = await c.request(AskRequest, { Add: { A: 1, B: 1, SleepMs: 10_000 }, TimeoutMs: 300, CancelAfterMs: 0 });
    assert.equal(late.Code, Code.DeadlineExceeded);
    assert.ok(late.ElapsedMs >= 290 && late.ElapsedMs < 3000, `elapsed ${late.ElapsedMs}`);
    await until(() => aborts.length === 1, 5000, "the handler's abort");
    assert.match(aborts[0]!, /^(TimeoutError|AbortError) deadline=true$/);

    // The server's CANCEL aborts the handler's signal.
    const canceled = await c.request(AskRequest, { Add: { A: 1, B: 1, SleepMs: 10_000 }, TimeoutMs: 0, CancelAfterMs: 200 });
    assert.equal(canceled.Code, Code.Canceled);
    await until(() => aborts.length === 2, 5000, "the handler's abort");
    // The Go caller always sends a deadline (its RequestTimeout, 10 s here).
    assert.equal(aborts[1], "AbortError deadline=true");
    assert.ok(canceled.ElapsedMs >= 190 && canceled.ElapsedMs < 3000, `elapsed ${canceled.ElapsedMs}`);
  });

  test("a server request with no TypeScript handler is answered Unimplemented", async () => {
    const c = await connected();
    const resp = await c.request(AskRequest, { Add: { A: 1, B: 2 }, TimeoutMs: 0, CancelAfterMs: 0 });
    assert.equal(resp.Code, Code.Unimplemented);
    assert.equal(resp.Message, "netmsg: unimplemented: no handler for testcontract.AddRequest");
    assert.equal(c.stats.unhandled, 1);
  });
});

describe("closing", () => {
  test("the server's close fails pending calls at once with its CloseError", async () => {
    const closes: CloseError[] = [];
    const c = await connected({ onDisconnect: (ce) => closes.push(ce) });
    const pending = c.request(SlowRequest, { Delay: 60e9 }, { timeout: 30_000 }).catch((e: unknown) => e);
    await c.request(CloseRequest, { Mode: "close", Text: "bye now", DelayMs: 100 });
    const start = Date.now();
    const err = await pending;
    assert.ok(Date.now() - start < 5000);
    assert.ok(err instanceof CloseError, String(err));
    assert.equal(err.reason, CloseReason.PeerNormal);
    assert.equal(err.code, 1000);
    assert.equal(err.text, "bye now");
    assert.equal(err.remote, true);
    assert.equal(codeOf(err), Code.Unavailable);
    await until(() => closes.length === 1, 5000, "onDisconnect");
    assert.equal(closes[0], err);
    assert.equal(c.state, "disconnected");
    // Without reconnect a call fails at once; connect may be called again.
    const nc = await c.request(WeatherRequest, { City: "Bonn" }).catch((e: unknown) => e);
    assert.ok(nc instanceof NotConnectedError, String(nc));
    assert.equal(codeOf(nc), Code.Unavailable);
    await c.connect();
    assert.equal((await c.request(WeatherRequest, { City: "Oslo" })).TempC, -3);
  });

  test("a kick (1008) stops a reconnecting client for good", async () => {
    const attempts: number[] = [];
    const c = await connected({ reconnect: { initialDelay: 20 }, onReconnecting: (n) => attempts.push(n) });
    await c.request(CloseRequest, { Mode: "kick", Text: "banned", DelayMs: 50 });
    await c.done;
    assert.equal(c.state, "closed");
    const err = c.err;
    assert.ok(err instanceof CloseError, String(err));
    assert.equal(err.reason, CloseReason.PolicyViolation);
    assert.equal(err.code, 1008);
    assert.equal(err.text, "banned");
    assert.equal(err.shouldReconnect, false);
    await delay(200);
    assert.deepEqual(attempts, []);
    const after = await c.request(WeatherRequest, { City: "Bonn" }).catch((e: unknown) => e);
    assert.ok(after instanceof NotConnectedError, String(after));
  });

  test("client.close() sends 1000 'client closed' and fails pending calls", async () => {
    const c = await connected();
    const { Session: id } = await c.request(EchoRequest, { Text: "who am I" });
    const pending = c.request(SlowRequest, { Delay: 60e9 }).catch((e: unknown) => e);
    await delay(50);
    await c.close();
    const err = await pending;
    assert.ok(err instanceof CloseError, String(err));
    assert.equal(err.reason, CloseReason.Normal);
    assert.equal(err.remote, false);
    assert.equal(c.state, "closed");
    await c.close(); // idempotent
    const after = await c.request(WeatherRequest, { City: "Bonn" }).catch((e: unknown) => e);
    assert.ok(after instanceof CloseError);

    const observer = await connected();
    let seen: { Reason: string; Code: number; Text: string; Remote: boolean } | undefined;
    await untilAsync(async () => {
      seen = ((await observer.request(ObserveRequest, {})).Closes ?? []).find((x) => x.Session === id);
      return seen !== undefined;
    }, 5000, "the server to see the close");
    assert.deepEqual({ ...seen, Session: undefined }, { Session: undefined, Reason: "peer normal", Code: 1000, Text: "client closed", Remote: true });
  });
});

async function untilAsync(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}
