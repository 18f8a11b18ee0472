// JSON payloads, as the Go side's serializer.JSON reads and writes them.

const encoder = new TextEncoder();
// As Go's encoding/json does, invalid UTF-8 in a payload becomes U+FFFD.
const decoder = new TextDecoder("utf-8");

/** Encodes a payload as JSON bytes. */
export function encodeJSON(v: unknown): Uint8Array {
  const text = JSON.stringify(v === undefined ? null : v);
  return encoder.encode(text);
}

/** Decodes a JSON payload; throws on anything that is no JSON text. */
export function decodeJSON(b: Uint8Array): unknown {
  return JSON.parse(decoder.decode(b));
}
