// Unit tests of the parts that need no server: Go durations and the
// reconnect hint, close codes, error codes, the backoff.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Backoff,
  backoffPolicy,
  CloseError,
  CloseReason,
  closeReasonForCode,
  Code,
  codeName,
  codeOf,
  NetmsgError,
  NotConnectedError,
  parseGoDuration,
  parseReconnectAfter,
} from "@netmsg/client";

import { after, at } from "../src/timers.js";

describe("Go durations and the reconnect hint", () => {
  test("parseGoDuration follows time.ParseDuration", () => {
    const cases: [string, number | undefined][] = [
      ["0", 0],
      ["500ms", 500],
      ["1.5s", 1500],
      ["1m30s", 90_000],
      ["2h", 7_200_000],
      ["-2ms", -2],
      ["+3s", 3000],
      ["1us", 0.001],
      ["1µs", 0.001],
      ["1μs", 0.001],
      ["1000000ns", 1],
      [".5s", 500],
      ["1.s", 1000],
      ["", undefined],
      ["1", undefined],
      ["s", undefined],
      [".s", undefined],
      ["1S", undefined],
      ["1sec", undefined],
      ["soon", undefined],
      ["1s ", undefined],
    ];
    for (const [s, want] of cases) assert.equal(parseGoDuration(s), want, JSON.stringify(s));
  });

  test("parseReconnectAfter reads the hint anywhere in the text, like CloseError.ReconnectAfter", () => {
    // The cases of the Go side's close_test.go, and a few more.
    const cases: [string, number][] = [
      ["server shutting down; reconnect-after=500ms", 500],
      ["reconnect-after=2s; bye", 2000],
      ["reconnect-after=-1s", 0],
      ["reconnect-after=soon", 0],
      ["reconnect-after=1.5s,then", 1500],
      ["going away reconnect-after=1m now", 60_000],
      ["no hint", 0],
      ["", 0],
    ];
    for (const [text, want] of cases) assert.equal(parseReconnectAfter(text), want, text);
    assert.equal(new CloseError(CloseReason.ServerShutdown, 1001, "server shutting down; reconnect-after=500ms", true).reconnectAfter, 500);
  });
});

describe("close codes and reasons", () => {
  test("the codes a server sends map to Go's reasons", () => {
    const cases: [number, CloseReason][] = [
      [1000, CloseReason.PeerNormal],
      [1001, CloseReason.ServerShutdown],
      [1002, CloseReason.ProtocolError],
      [1003, CloseReason.ProtocolError],
      [1005, CloseReason.PeerNormal],
      [1006, CloseReason.NetworkError],
      [1007, CloseReason.ProtocolError],
      [1008, CloseReason.PolicyViolation],
      [1009, CloseReason.MessageTooLarge],
      [1011, CloseReason.InternalError],
      [1013, CloseReason.SlowConsumer],
      [4000, CloseReason.PeerNormal],
      [4999, CloseReason.PeerNormal],
      [3000, CloseReason.ProtocolError],
      [1004, CloseReason.ProtocolError],
    ];
    for (const [code, reason] of cases) assert.equal(closeReasonForCode(code), reason, String(code));
  });

  test("CloseError reads like Go's", () => {
    const ce = new CloseError(CloseReason.PolicyViolation, 1008, "banned", true);
    assert.equal(ce.message, "netmsg: session closed: policy violation (by peer) [1008]: banned");
    assert.equal(ce.shouldReconnect, false);
    assert.equal(new CloseError(CloseReason.ConnectionLost, 1006, "", false).message, "netmsg: session closed: connection lost [1006]");
    assert.equal(new CloseError(CloseReason.ServerShutdown, 1001, "", true).shouldReconnect, true);
  });
});

describe("error codes", () => {
  test("names and messages as Go spells them", () => {
    assert.equal(codeName(Code.NotFound), "not_found");
    assert.equal(codeName(Code.Unauthenticated), "unauthenticated");
    assert.equal(codeName(99), "code_99");
    const e = new NetmsgError(Code.InvalidArgument, "bad city");
    assert.equal(e.message, "netmsg: invalid_argument: bad city");
    assert.equal(new NetmsgError(Code.Internal).message, "netmsg: internal");
  });

  test("codeOf maps errors as Go's CodeOf does", () => {
    assert.equal(codeOf(undefined), Code.OK);
    assert.equal(codeOf(new NetmsgError(Code.Aborted, "x")), Code.Aborted);
    assert.equal(codeOf(new CloseError(CloseReason.NetworkError, 1006, "", true)), Code.Unavailable);
    assert.equal(codeOf(new NotConnectedError()), Code.Unavailable);
    assert.equal(codeOf(new NotConnectedError("waited", Code.DeadlineExceeded)), Code.DeadlineExceeded);
    assert.equal(codeOf(new DOMException("t", "TimeoutError")), Code.DeadlineExceeded);
    assert.equal(codeOf(new DOMException("a", "AbortError")), Code.Canceled);
    assert.equal(codeOf(new Error("other")), Code.Unknown);
  });
});

describe("backoff", () => {
  test("exponential from the initial delay, capped, spread by the jitter", () => {
    const p = backoffPolicy({ initialDelay: 100, multiplier: 2, jitter: 0.5, maxDelay: 1000 });
    const lo = new Backoff(p, () => 0);
    const hi = new Backoff(p, () => 1);
    const mid = new Backoff(p, () => 0.5);
    const bases = [100, 200, 400, 800, 1000, 1000];
    for (const b of bases) {
      assert.equal(lo.next(), b * 0.5);
      assert.equal(hi.next(), b * 1.5);
      assert.equal(mid.next(), b);
    }
    mid.reset();
    assert.equal(mid.next(), 100);
  });

  test("the defaults are Go's DefaultBackOff: 500 ms, x1.6, ±50 %, 30 s, never giving up", () => {
    assert.deepEqual(backoffPolicy(), { initialDelay: 500, multiplier: 1.6, jitter: 0.5, maxDelay: 30_000, maxAttempts: Infinity });
  });

  test("maxAttempts gives up", () => {
    const b = new Backoff(backoffPolicy({ maxAttempts: 2 }), () => 0.5);
    assert.equal(b.next(), 500);
    assert.equal(b.next(), 800);
    assert.equal(b.next(), undefined);
  });
});

describe("timers", () => {
  test("delays past setTimeout's 24.8-day limit do not fire at once", async () => {
    let fired = 0;
    const cancelLong = after(2 ** 31 + 1000, () => fired++);
    const cancelInf = after(Infinity, () => fired++);
    let soon = 0;
    after(5, () => soon++);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(soon, 1);
    assert.equal(fired, 0);
    cancelLong();
    cancelInf();
  });

  test("a cancelled timer never fires", async () => {
    let fired = 0;
    const cancel = at(Date.now() + 20, () => fired++);
    cancel();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(fired, 0);
  });
});
