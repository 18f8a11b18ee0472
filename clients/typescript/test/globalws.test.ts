// The client with the runtime's own WebSocket, as Node 22+ has it (and
// browsers): no WebSocket option. On Node 20 this file runs itself again
// with --experimental-websocket, which turns on the same implementation.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { WebSocketServer } from "ws";

import { Client, CloseError, CloseReason } from "@netmsg/client";

import { WeatherRequest } from "./gen/contract.js";
import { AddRequest, AskRequest } from "./gen/testcontract.js";
import { startServer, until } from "./server.js";

const hasGlobal = typeof (globalThis as { WebSocket?: unknown }).WebSocket === "function";

if (!hasGlobal) {
  test("without a global WebSocket and no option, the constructor says what to pass", () => {
    assert.throws(() => new Client("ws://127.0.0.1:1/"), (err: unknown) => err instanceof TypeError && /pass one as the WebSocket option/.test(err.message));
  });

  test("the runtime's own WebSocket (node --experimental-websocket)", () => {
    const self = fileURLToPath(import.meta.url);
    // Run as a plain program (not as a child of this test runner, which
    // would make it report in the runner's binary format).
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ["--experimental-websocket", "--test-reporter=tap", self], { encoding: "utf8", timeout: 120_000, env });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    assert.match(r.stdout, /^# pass [1-9]/m, out);
    assert.match(r.stdout, /^# fail 0$/m, out);
  });
} else {
  const stops: (() => Promise<void>)[] = [];
  after(async () => {
    for (const s of stops) await s();
  });

  test("typed requests both ways and PINGs with the global WebSocket", async () => {
    const srv = await startServer();
    const c = new Client(srv.url, { heartbeatInterval: 50 });
    stops.push(async () => {
      await c.close();
      await srv.stop();
    });
    c.handle(AddRequest, (req) => ({ Sum: req.A + req.B }));
    await c.connect();
    assert.equal(c.session?.protocol, "netmsg.v2.json");
    assert.equal((await c.request(WeatherRequest, { City: "Bonn" })).Forecast, "light rain");
    const ask = await c.request(AskRequest, { Add: { A: 1, B: 2 }, TimeoutMs: 0, CancelAfterMs: 0 });
    assert.equal(ask.Sum, 3);
    await until(() => c.rtt > 0, 5000, "a PONG");
  });

  test("a protocol error closes with 1000 and the text where the standard API refuses 1002", async () => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: () => "netmsg.v2.json" });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    stops.push(() => new Promise((resolve) => wss.close(() => resolve())));
    const seen = new Promise<{ code: number; reason: string }>((resolve) =>
      wss.on("connection", (ws) => {
        ws.on("close", (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
        ws.send(new Uint8Array([0x08])); // a truncated envelope
      }),
    );
    const closes: CloseError[] = [];
    const c = new Client(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { onDisconnect: (ce) => closes.push(ce), onError: () => {} });
    await c.connect();
    assert.deepEqual(await seen, { code: 1000, reason: "malformed envelope" });
    await until(() => closes.length === 1, 2000, "onDisconnect");
    assert.equal(closes[0]!.reason, CloseReason.ProtocolError);
    assert.equal(closes[0]!.code, 1002);
  });
}
