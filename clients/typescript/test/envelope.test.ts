// The envelope codec against the Go side: vectors encoded by the generated
// Go code (proto.Marshal, deterministic) must decode to their fields and
// encode to the same bytes, and the Go decoder's verdict on malformed input
// must be this decoder's too.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";

import { decodeEnvelope, encodeEnvelope, type Envelope, Kind, MalformedEnvelopeError } from "@netmsg/client";

interface Vector {
  hex: string;
  kind: number;
  id: string;
  type: string;
  payload: string;
  error: { code: number; message: string } | null;
  timeoutMs: string;
  metadata: Record<string, string>;
}

const binary = fileURLToPath(new URL("../testserver", import.meta.url));
const fromGo = JSON.parse(execFileSync(binary, ["-vectors"], { encoding: "utf8" })) as {
  vectors: Vector[];
  verdicts: { name: string; hex: string; accept: boolean }[];
};

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

function idOf(v: Vector): number | bigint {
  const big = BigInt(v.id);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

describe("envelope codec against Go's encoding", () => {
  test("Go's bytes decode to their fields", () => {
    assert.ok(fromGo.vectors.length >= 10);
    for (const v of fromGo.vectors) {
      const e = decodeEnvelope(bytes(v.hex));
      assert.equal(e.kind, v.kind, v.hex);
      assert.equal(e.id, idOf(v), v.hex);
      assert.equal(e.type, v.type);
      assert.equal(hex(e.payload), v.payload);
      assert.deepEqual(e.error, v.error ?? undefined);
      assert.equal(e.timeoutMs, Math.min(Number(v.timeoutMs), Number.MAX_SAFE_INTEGER));
      assert.deepEqual(e.metadata, v.metadata);
    }
  });

  test("the fields encode to Go's bytes", () => {
    for (const v of fromGo.vectors) {
      if (BigInt(v.timeoutMs) > BigInt(Number.MAX_SAFE_INTEGER)) continue; // a number cannot hold it
      const e: Partial<Envelope> & { kind: Kind } = {
        kind: v.kind as Kind,
        id: idOf(v),
        type: v.type,
        payload: bytes(v.payload),
        timeoutMs: Number(v.timeoutMs),
        metadata: v.metadata,
      };
      if (v.error) e.error = v.error;
      assert.equal(hex(encodeEnvelope(e)), v.hex, JSON.stringify(v));
    }
  });

  test("malformed input: accepted or rejected as Go's decoder does", () => {
    assert.ok(fromGo.verdicts.length >= 20);
    for (const c of fromGo.verdicts) {
      let accepted = true;
      try {
        decodeEnvelope(bytes(c.hex));
      } catch (err) {
        assert.ok(err instanceof MalformedEnvelopeError, `${c.name}: ${String(err)}`);
        accepted = false;
      }
      assert.equal(accepted, c.accept, c.name);
    }
  });
});

describe("envelope codec", () => {
  test("ids round-trip up to 2^64-1, as numbers while they are safe", () => {
    const ids: (number | bigint)[] = [1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32, 2 ** 49 - 1, 2 ** 49, 2 ** 53 - 1, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
    for (const id of ids) {
      const e = decodeEnvelope(encodeEnvelope({ kind: Kind.Cancel, id }));
      assert.equal(e.id, id, String(id));
    }
    assert.throws(() => encodeEnvelope({ kind: Kind.Cancel, id: 2n ** 64n }), RangeError);
    assert.throws(() => encodeEnvelope({ kind: Kind.Cancel, id: -1 }), RangeError);
  });

  test("every truncation of a valid envelope is rejected or decodes, never throws anything else", () => {
    const full = encodeEnvelope({
      kind: Kind.Request,
      id: 77,
      type: "contract.WeatherRequest",
      payload: new TextEncoder().encode('{"City":"Bonn"}'),
      timeoutMs: 1500,
      metadata: { a: "1", b: "2" },
    });
    for (let n = 0; n < full.length; n++) {
      try {
        decodeEnvelope(full.subarray(0, n));
      } catch (err) {
        assert.ok(err instanceof MalformedEnvelopeError, `prefix ${n}: ${String(err)}`);
      }
    }
  });

  test("random and mutated bytes only ever fail with MalformedEnvelopeError", () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    const valid = encodeEnvelope({ kind: Kind.Error, id: 9, type: "x.Y", error: { code: 5, message: "nope" }, metadata: { k: "v" } });
    let decoded = 0;
    for (let i = 0; i < 5000; i++) {
      let b: Uint8Array;
      if (i % 2 === 0) {
        b = new Uint8Array(1 + (rand() % 40));
        for (let j = 0; j < b.length; j++) b[j] = rand();
      } else {
        b = valid.slice();
        b[rand() % b.length] = rand(); // one byte changed
      }
      try {
        decodeEnvelope(b);
        decoded++;
      } catch (err) {
        assert.ok(err instanceof MalformedEnvelopeError, String(err));
      }
    }
    assert.ok(decoded > 250, `only ${decoded} inputs decoded`);
  });

  test("invalid UTF-8 in a string field decodes to U+FFFD, as the Go side accepts it", () => {
    const b = new Uint8Array([0x08, 0x01, 0x1a, 0x02, 0xc3, 0x28]);
    assert.equal(decodeEnvelope(b).type, "\ufffd(");
  });
});
