// What the client needs of a WebSocket: the standard browser API, which
// Node 22 has as a global and the `ws` package implements for Node 20.

/** The part of the standard WebSocket API the client uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the global WebSocket, or the `ws` package's. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** WebSocket.OPEN. */
export const OPEN = 1;

/** The subprotocol prefix of protocol revision 1 (no PING envelopes). */
export const subprotocolV1 = "netmsg.v1.";
/**
 * The subprotocol prefix of protocol revision 2: revision 1 plus the PING and
 * PONG envelopes a browser needs to notice a dead link (docs/PROTOCOL.md).
 */
export const subprotocolV2 = "netmsg.v2.";

/** The payload serializer the client speaks. */
export const serializerName = "json";

/**
 * The subprotocols the client offers, in order of preference: revision 2
 * first, so that a server of revision 1 still accepts the client.
 */
export const offeredSubprotocols = [subprotocolV2 + serializerName, subprotocolV1 + serializerName];

/** Returns the WebSocket constructor to use, or throws naming what to do. */
export function resolveWebSocket(given?: WebSocketConstructor): WebSocketConstructor {
  if (given) return given;
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof global === "function") return global as WebSocketConstructor;
  throw new TypeError(
    "netmsg: this runtime has no global WebSocket (Node 20); pass one as the WebSocket option, " +
      "for example the ws package's: new Client(url, { WebSocket })",
  );
}

/**
 * Sends a close frame with code when the WebSocket implementation lets
 * applications send it; browsers allow only 1000 and 3000-4999, so a protocol
 * error (1002) or an oversized frame (1009) goes out as 1000 with the same
 * reason text there.
 */
export function closeSocket(ws: WebSocketLike, code: number, reason: string): void {
  const text = truncateUTF8(reason, 123);
  try {
    ws.close(code, text);
  } catch {
    try {
      ws.close(1000, text);
    } catch {
      // Already closing or closed.
    }
  }
}

/** Cuts s to at most max UTF-8 bytes, at a character boundary. */
export function truncateUTF8(s: string, max: number): string {
  const bytes = new TextEncoder().encode(s);
  if (bytes.length <= max) return s;
  let cut = max;
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--;
  return new TextDecoder().decode(bytes.subarray(0, cut));
}
