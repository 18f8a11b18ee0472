// Error codes, the errors calls fail with, and close reasons, as the Go
// library defines them (errors.go, close.go).

/**
 * Error codes in gRPC numbering, the values the Go library's netmsg.Code
 * carries on the wire. 0 (OK) is never sent.
 */
export const Code = {
  OK: 0,
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;

/**
 * An error code. A peer may send a code this version does not name, so the
 * type admits any number.
 */
export type Code = (typeof Code)[keyof typeof Code] | (number & {});

const codeNames = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
  "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
  "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
  "unauthenticated",
];

/** Returns a code's name in snake case, as Go's Code.String spells it ("not_found"). */
export function codeName(code: Code): string {
  return codeNames[code] ?? "code_" + code;
}

/**
 * NetmsgError is what a request fails with when the peer answered with an
 * ERROR envelope, when it timed out (Code.DeadlineExceeded) or was aborted
 * (Code.Canceled); and what a request handler throws to answer with a code.
 * Its message reads like the Go error: "netmsg: not_found: no forecast".
 */
export class NetmsgError extends Error {
  /** The error code. */
  readonly code: Code;
  /** The message as it travels on the wire, without the prefix. */
  readonly rawMessage: string;

  constructor(code: Code, rawMessage = "", options?: { cause?: unknown }) {
    super("netmsg: " + codeName(code) + (rawMessage ? ": " + rawMessage : ""), options);
    this.name = "NetmsgError";
    this.code = code;
    this.rawMessage = rawMessage;
  }
}

/**
 * NotConnectedError is what send and request fail with when there is no
 * connection and the call may not wait for one (fail-fast, no reconnect), or
 * when its deadline or signal ended while it waited for one. Its code is
 * Code.Unavailable, or Code.DeadlineExceeded / Code.Canceled when the wait
 * ended, as Go's CodeOf reports for ErrNotConnected wrapped with the context
 * error.
 */
export class NotConnectedError extends NetmsgError {
  constructor(detail?: string, code: Code = Code.Unavailable, options?: { cause?: unknown }) {
    super(code, "not connected" + (detail ? ": " + detail : ""), options);
    this.name = "NotConnectedError";
  }
}

/** Why a connection ended; the texts are Go's CloseReason.String. */
export const CloseReason = {
  /** This side closed on purpose (client.close(), session.close()). */
  Normal: "normal",
  /** The server closed on purpose (close code 1000, 1005, or 4000-4999). */
  PeerNormal: "peer normal",
  /** Nothing arrived within the receive timeout (dead link). */
  ConnectionLost: "connection lost",
  /** The connection failed or ended without a close frame (1006). */
  NetworkError: "network error",
  /** One side sent something malformed (1002, 1003, 1007, unknown codes). */
  ProtocolError: "protocol error",
  /** A frame was larger than the limit (1009). */
  MessageTooLarge: "message too large",
  /** The server found this client too slow to read (1013). */
  SlowConsumer: "slow consumer",
  /** The server is going away (1001); reconnect, after its hint. */
  ServerShutdown: "server shutdown",
  /** Kicked or refused (1008): the client does not reconnect. */
  PolicyViolation: "policy violation",
  /** The server failed (1011). */
  InternalError: "internal error",
} as const;

/** One of the close reasons. */
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];

/**
 * The reason a close code from the server stands for, as the Go client
 * interprets it.
 */
export function closeReasonForCode(code: number): CloseReason {
  switch (code) {
    case 1000:
    case 1005: // a close frame without a status code
      return CloseReason.PeerNormal;
    case 1001:
      return CloseReason.ServerShutdown;
    case 1002:
    case 1003:
    case 1007:
      return CloseReason.ProtocolError;
    case 1006:
      return CloseReason.NetworkError;
    case 1008:
      return CloseReason.PolicyViolation;
    case 1009:
      return CloseReason.MessageTooLarge;
    case 1011:
      return CloseReason.InternalError;
    case 1013:
      return CloseReason.SlowConsumer;
  }
  if (code >= 4000 && code <= 4999) return CloseReason.PeerNormal;
  return CloseReason.ProtocolError;
}

/**
 * CloseError describes how a connection ended. onDisconnect reports it, and
 * calls pending on the connection fail with it.
 */
export class CloseError extends Error {
  /** Why the connection ended. */
  readonly reason: CloseReason;
  /** The WebSocket close code sent or received (1006 when there was none). */
  readonly code: number;
  /** The close frame's reason text. */
  readonly text: string;
  /** True when the server ended the connection. */
  readonly remote: boolean;

  constructor(reason: CloseReason, code: number, text: string, remote: boolean, options?: { cause?: unknown }) {
    super(
      "netmsg: session closed: " + reason + (remote ? " (by peer)" : "") + " [" + code + "]" + (text ? ": " + text : ""),
      options,
    );
    this.name = "CloseError";
    this.reason = reason;
    this.code = code;
    this.text = text;
    this.remote = remote;
  }

  /** False for a policy violation (kicked or refused), true otherwise. */
  get shouldReconnect(): boolean {
    return this.reason !== CloseReason.PolicyViolation;
  }

  /**
   * The minimum delay, in milliseconds, that the server asked for in its close
   * text ("server shutting down; reconnect-after=500ms"), or 0 when it named
   * none.
   */
  get reconnectAfter(): number {
    return parseReconnectAfter(this.text);
  }
}

const hintKey = "reconnect-after=";

/**
 * Returns the delay in milliseconds named by a close text's
 * "reconnect-after=<Go duration>" hint, or 0 when it has none or it does not
 * parse. The duration ends at the first space, ';' or ','.
 */
export function parseReconnectAfter(text: string): number {
  const i = text.indexOf(hintKey);
  if (i < 0) return 0;
  let rest = text.slice(i + hintKey.length);
  const j = rest.search(/[ ;,]/);
  if (j >= 0) rest = rest.slice(0, j);
  const d = parseGoDuration(rest);
  return d === undefined || d < 0 ? 0 : d;
}

const unitsMs: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3, // U+00B5
  "μs": 1e-3, // U+03BC
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a duration in Go's time.ParseDuration grammar ("1.5s", "1m30s",
 * "-2ms", "0") into milliseconds; undefined when it does not parse.
 */
export function parseGoDuration(s: string): number | undefined {
  let rest = s;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") return undefined;
  let total = 0;
  const part = /^(\d*)(?:\.(\d*))?([a-zµμ]+)/;
  while (rest !== "") {
    const m = part.exec(rest);
    if (!m) return undefined;
    const [all, whole = "", frac = "", unit = ""] = m;
    if (whole === "" && frac === "") return undefined; // "." or ".s"
    const scale = unitsMs[unit];
    if (scale === undefined) return undefined;
    total += (Number(whole || "0") + (frac ? Number("0." + frac) : 0)) * scale;
    rest = rest.slice(all.length);
  }
  return sign * total;
}

/**
 * Returns the code an error carries, as Go's CodeOf does: a NetmsgError's
 * code, Code.Unavailable for a CloseError, Code.DeadlineExceeded or
 * Code.Canceled for an abort reason of that kind, Code.OK for
 * undefined/null, and Code.Unknown otherwise.
 */
export function codeOf(err: unknown): Code {
  if (err === undefined || err === null) return Code.OK;
  if (err instanceof NetmsgError) return err.code;
  if (err instanceof CloseError) return Code.Unavailable;
  if (isTimeoutReason(err)) return Code.DeadlineExceeded;
  if (isAbortReason(err)) return Code.Canceled;
  return Code.Unknown;
}

/** True for the reason AbortSignal.timeout gives (a TimeoutError DOMException). */
export function isTimeoutReason(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === "TimeoutError";
}

/** True for the reason AbortController.abort() gives (an AbortError DOMException). */
export function isAbortReason(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === "AbortError";
}
