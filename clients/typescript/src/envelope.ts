// The netmsg wire envelope (proto/envelope.proto, message netmsg.v1.Envelope)
// and a small protobuf codec for it. The envelope has seven fields, so a
// hand-written codec is shorter than the configuration a protobuf runtime
// would need, and the package stays free of runtime dependencies.

/** Envelope kinds, the values of the netmsg.v1.Kind enum. */
export const Kind = {
  Message: 1,
  Request: 2,
  Response: 3,
  Error: 4,
  Cancel: 5,
  Ping: 6,
  Pong: 7,
} as const;

/** One of the envelope kinds. */
export type Kind = (typeof Kind)[keyof typeof Kind];

/**
 * A request id. Ids this client chooses are numbers; an id a peer chooses is
 * a number while it fits in 2^53 and a bigint beyond, so that it is echoed back
 * exactly.
 */
export type Id = number | bigint;

/** A decoded envelope. Absent fields hold their proto3 defaults. */
export interface Envelope {
  kind: Kind;
  id: Id;
  type: string;
  payload: Uint8Array;
  /** Set only for Kind.Error. */
  error?: { code: number; message: string };
  /** The caller's remaining deadline in milliseconds; 0 means none. */
  timeoutMs: number;
  metadata: Record<string, string>;
}

/** The most metadata entries one envelope may carry, as the Go side enforces. */
export const maxMetadataEntries = 64;

/** Thrown by decodeEnvelope for bytes that are no valid envelope. */
export class MalformedEnvelopeError extends Error {
  constructor(what: string) {
    super("netmsg: malformed envelope: " + what);
    this.name = "MalformedEnvelopeError";
  }
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_SGROUP = 3;
const WIRE_EGROUP = 4;
const WIRE_I32 = 5;

const utf8Encoder = new TextEncoder();
// Not fatal: like the Go side's decoder, invalid UTF-8 in a string field is
// no reason to drop the connection (it becomes U+FFFD).
const utf8Decoder = new TextDecoder("utf-8");

const TWO_32 = 0x1_0000_0000;

/** Grows a byte buffer as an envelope is written into it. */
class Writer {
  buf: Uint8Array;
  pos = 0;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  varint(v: number | bigint): void {
    this.room(10);
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError("netmsg: varint out of range: " + v);
      let lo = v % TWO_32;
      let hi = Math.floor(v / TWO_32);
      while (hi > 0 || lo > 0x7f) {
        this.buf[this.pos++] = (lo & 0x7f) | 0x80;
        lo = ((lo >>> 7) | ((hi & 0x7f) << 25)) >>> 0;
        hi = Math.floor(hi / 128);
      }
      this.buf[this.pos++] = lo;
      return;
    }
    if (v < 0n || v >= 1n << 64n) throw new RangeError("netmsg: varint out of range: " + v);
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  bytes(field: number, b: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, utf8Encoder.encode(s));
  }

  /** Writes a length-delimited submessage built by fill. */
  message(field: number, fill: (w: Writer) => void): void {
    const inner = new Writer(32);
    fill(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

/**
 * Encodes an envelope as protobuf, with the bytes the Go side's
 * deterministic encoder produces: fields in number order, defaults omitted,
 * metadata sorted by key.
 */
export function encodeEnvelope(e: Partial<Envelope> & { kind: Kind }): Uint8Array {
  const w = new Writer(32 + (e.payload?.length ?? 0) + (e.type?.length ?? 0) * 3);
  w.tag(1, WIRE_VARINT);
  w.varint(e.kind);
  if (e.id !== undefined && e.id !== 0 && e.id !== 0n) {
    w.tag(2, WIRE_VARINT);
    w.varint(e.id);
  }
  if (e.type) w.string(3, e.type);
  if (e.payload && e.payload.length > 0) w.bytes(4, e.payload);
  if (e.error) {
    const { code, message } = e.error;
    w.message(5, (m) => {
      if (code !== 0) {
        m.tag(1, WIRE_VARINT);
        m.varint(code);
      }
      if (message) m.string(2, message);
    });
  }
  if (e.timeoutMs) {
    w.tag(6, WIRE_VARINT);
    w.varint(Math.min(Math.max(0, Math.ceil(e.timeoutMs)), Number.MAX_SAFE_INTEGER));
  }
  if (e.metadata) {
    const keys = Object.keys(e.metadata).sort(compareUTF16AsBytes);
    for (const k of keys) {
      const v = e.metadata[k] ?? "";
      // Map entries carry both fields, also when empty, as Go writes them.
      w.message(7, (m) => {
        m.string(1, k);
        m.string(2, v);
      });
    }
  }
  return w.finish();
}

// Go sorts map keys as byte strings; for the keys people use (ASCII) UTF-16
// order is the same, and for the rest it only changes the order, which no
// decoder depends on.
function compareUTF16AsBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Reads protobuf fields from a byte slice. */
class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** A varint as a number when it fits in 2^53, else as a bigint. */
  varint(what: string): number | bigint {
    let lo = 0;
    let shift = 0;
    // Up to 7 bytes (49 bits) accumulate exactly in a number.
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new MalformedEnvelopeError(what + ": truncated varint");
      const b = this.buf[this.pos++]!;
      if (i === 9 && b > 1) throw new MalformedEnvelopeError(what + ": varint overflows 64 bits");
      if (shift < 49) {
        lo += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) return lo;
        shift += 7;
        continue;
      }
      // Past 49 bits: finish in bigint.
      let big = BigInt(lo) + (BigInt(b & 0x7f) << BigInt(shift));
      let j = i;
      let last = b;
      while (last >= 0x80) {
        j++;
        shift += 7;
        if (j >= 10) throw new MalformedEnvelopeError(what + ": varint overflows 64 bits");
        if (this.pos >= this.buf.length) throw new MalformedEnvelopeError(what + ": truncated varint");
        last = this.buf[this.pos++]!;
        if (j === 9 && last > 1) throw new MalformedEnvelopeError(what + ": varint overflows 64 bits");
        big += BigInt(last & 0x7f) << BigInt(shift);
      }
      return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    throw new MalformedEnvelopeError(what + ": varint overflows 64 bits");
  }

  /** A varint that must be a number (lengths, field tags). */
  smallVarint(what: string): number {
    const v = this.varint(what);
    if (typeof v === "bigint") throw new MalformedEnvelopeError(what + ": value too large");
    return v;
  }

  lengthDelimited(what: string): Uint8Array {
    const n = this.smallVarint(what);
    if (n > this.buf.length - this.pos) throw new MalformedEnvelopeError(what + ": length beyond the frame");
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  skip(wire: number, what: string, field = 0, depth = 0): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint(what);
        return;
      case WIRE_I64:
        this.advance(8, what);
        return;
      case WIRE_LEN:
        this.lengthDelimited(what);
        return;
      case WIRE_I32:
        this.advance(4, what);
        return;
      case WIRE_SGROUP:
        // A deprecated group: skip its fields up to the matching end.
        if (depth >= 100) throw new MalformedEnvelopeError(what + ": groups nested too deeply");
        for (;;) {
          if (this.done()) throw new MalformedEnvelopeError(what + ": unterminated group");
          const [f, w] = this.tag();
          if (w === WIRE_EGROUP) {
            if (f !== field) throw new MalformedEnvelopeError(what + ": mismatched end of group");
            return;
          }
          this.skip(w, what, f, depth + 1);
        }
    }
    throw new MalformedEnvelopeError(what + ": unexpected wire type " + wire);
  }

  private advance(n: number, what: string): void {
    if (n > this.buf.length - this.pos) throw new MalformedEnvelopeError(what + ": truncated field");
    this.pos += n;
  }

  /** The next field's number and wire type. */
  tag(): [number, number] {
    const t = this.smallVarint("tag");
    const field = Math.floor(t / 8);
    if (field === 0) throw new MalformedEnvelopeError("field number 0");
    return [field, t % 8];
  }
}

const fieldNames = ["", "kind", "id", "type", "payload", "error", "timeout_ms", "metadata"];

function expectWire(field: number, got: number, want: number): void {
  if (got !== want) {
    throw new MalformedEnvelopeError(`field ${fieldNames[field]} has wire type ${got}, want ${want}`);
  }
}

function decodeString(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

/**
 * Decodes a protobuf envelope. Unknown fields are skipped, the last value of
 * a repeated scalar field wins (as in every protobuf runtime), and a known
 * field with the wrong wire type, an unknown or unspecified kind, or more
 * than maxMetadataEntries metadata entries is rejected with a
 * MalformedEnvelopeError, as the Go side's decoder does; invalid UTF-8 in a
 * string field decodes to U+FFFD. payload aliases data.
 */
export function decodeEnvelope(data: Uint8Array): Envelope {
  const r = new Reader(data);
  let kind: number | bigint = 0;
  const e: Envelope = { kind: 0 as Kind, id: 0, type: "", payload: new Uint8Array(0), timeoutMs: 0, metadata: {} };
  let entries = 0;
  while (!r.done()) {
    const [field, wire] = r.tag();
    switch (field) {
      case 1:
        expectWire(field, wire, WIRE_VARINT);
        kind = r.varint("kind");
        break;
      case 2:
        expectWire(field, wire, WIRE_VARINT);
        e.id = r.varint("id");
        break;
      case 6: {
        expectWire(field, wire, WIRE_VARINT);
        const t = r.varint("timeout_ms");
        e.timeoutMs = typeof t === "bigint" ? Number.MAX_SAFE_INTEGER : t;
        break;
      }
      case 3:
        expectWire(field, wire, WIRE_LEN);
        e.type = decodeString(r.lengthDelimited("type"));
        break;
      case 4:
        expectWire(field, wire, WIRE_LEN);
        e.payload = r.lengthDelimited("payload");
        break;
      case 5:
        expectWire(field, wire, WIRE_LEN);
        e.error = decodeError(r.lengthDelimited("error"), e.error);
        break;
      case 7: {
        expectWire(field, wire, WIRE_LEN);
        if (++entries > maxMetadataEntries) {
          throw new MalformedEnvelopeError(`more than ${maxMetadataEntries} metadata entries`);
        }
        const [k, v] = decodeEntry(r.lengthDelimited("metadata"));
        e.metadata[k] = v;
        break;
      }
      default:
        r.skip(wire, "field " + field, field);
    }
  }
  if (typeof kind !== "number" || kind < Kind.Message || kind > Kind.Pong) {
    throw new MalformedEnvelopeError(kind === 0 ? "kind unspecified" : "unknown kind " + kind);
  }
  e.kind = kind as Kind;
  return e;
}

// A submessage that appears twice is merged, as protobuf runtimes do.
function decodeError(b: Uint8Array, prev?: { code: number; message: string }): { code: number; message: string } {
  const r = new Reader(b);
  const out = { code: prev?.code ?? 0, message: prev?.message ?? "" };
  while (!r.done()) {
    const [field, wire] = r.tag();
    if (field === 1) {
      if (wire !== WIRE_VARINT) throw new MalformedEnvelopeError("error.code has wire type " + wire);
      const c = r.varint("error.code");
      // uint32 in the schema: protobuf runtimes keep the low 32 bits.
      out.code = Number(BigInt(c) & 0xffffffffn);
    } else if (field === 2) {
      if (wire !== WIRE_LEN) throw new MalformedEnvelopeError("error.message has wire type " + wire);
      out.message = decodeString(r.lengthDelimited("error.message"));
    } else {
      r.skip(wire, "error field " + field, field);
    }
  }
  return out;
}

function decodeEntry(b: Uint8Array): [string, string] {
  const r = new Reader(b);
  let k = "";
  let v = "";
  while (!r.done()) {
    const [field, wire] = r.tag();
    if (field === 1 || field === 2) {
      if (wire !== WIRE_LEN) throw new MalformedEnvelopeError("metadata entry field has wire type " + wire);
      const s = decodeString(r.lengthDelimited("metadata"));
      if (field === 1) k = s;
      else v = s;
    } else {
      r.skip(wire, "metadata field " + field, field);
    }
  }
  return [k, v];
}
