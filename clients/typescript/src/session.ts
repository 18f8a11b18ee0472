// One live connection: the calls waiting for answers, the server's requests
// and messages being handled, the heartbeat, and the one close state all of
// them observe.

import type { MessageType, RequestType } from "./contract.js";
import { decodeEnvelope, encodeEnvelope, type Envelope, type Id, Kind } from "./envelope.js";
import {
  CloseError,
  CloseReason,
  closeReasonForCode,
  Code,
  isTimeoutReason,
  NetmsgError,
} from "./errors.js";
import type { Handlers } from "./handlers.js";
import { Inbox } from "./inbox.js";
import { after, at, type Cancel, maxTimerDelay } from "./timers.js";
import { decodeJSON, encodeJSON } from "./json.js";
import {
  closeSocket,
  offeredSubprotocols,
  OPEN,
  subprotocolV2,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./transport.js";

/** Options of one request. */
export interface CallOptions {
  /** Aborting it gives up on the request: the server is sent a CANCEL. */
  signal?: AbortSignal;
  /**
   * How long to wait for the answer, in milliseconds, counted from the call
   * (including any wait for a connection). Sent to the server as timeout_ms.
   * Default: the client's requestTimeout. 0 or Infinity: no deadline.
   */
  timeout?: number;
  /** Key/value pairs sent with the request (for example "traceparent"). */
  metadata?: Record<string, string>;
}

/** Options of one message. */
export interface SendOptions {
  /** Aborting it stops a send that waits for a connection. */
  signal?: AbortSignal;
  /** How long a send may wait for a connection; default the requestTimeout. */
  timeout?: number;
  /** Key/value pairs sent with the message. */
  metadata?: Record<string, string>;
}

/** MessageTooLargeError is thrown for an outgoing envelope over maxMessageSize. */
export class MessageTooLargeError extends Error {
  constructor(size: number, limit: number) {
    super(`netmsg: message too large: ${size} bytes, the limit is ${limit}`);
    this.name = "MessageTooLargeError";
  }
}

/** ConnectError is what a failed connection attempt rejects with. */
export class ConnectError extends Error {
  constructor(url: string, detail: string, options?: { cause?: unknown }) {
    super(`netmsg: connect to ${url}: ${detail}`, options);
    this.name = "ConnectError";
  }
}

/** Counters of what a client dropped or could not deliver. */
export interface Stats {
  /** Answers that arrived after their caller gave up. */
  lateResponses: number;
  /** Answers for ids no call was waiting for. */
  unknownResponses: number;
  /** Requests that could not be handled because the connection closed. */
  droppedInbound: number;
  /** Messages and requests for a type with no handler. */
  unhandled: number;
}

/** What a session needs from its client. */
export interface SessionConfig {
  requestTimeout: number;
  heartbeatInterval: number;
  receiveTimeout: number;
  disconnectTimeout: number;
  maxMessageSize: number;
  maxQueuedBytes: number;
  concurrency: number;
  handlers: Handlers;
  stats: Stats;
  onError: (err: unknown) => void;
  onUnhandled: (type: string) => void;
}

interface PendingCall {
  name: string;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  done: () => void; // clears the call's timer and signal listener
}


type CloseMode = "graceful" | "drop" | "ended";

/** How many unanswered PINGs a session times; older ones are forgotten. */
const maxPingsOut = 8;

/** How many given-up call ids a session remembers, to count late answers. */
const maxAbandoned = 1024;

/**
 * Session is one connection to the server. The client hands the current one
 * to onConnect; client.session returns it while connected. Its calls never
 * wait for a connection: on a closed session they fail at once with its
 * CloseError.
 */
export class Session {
  /** The subprotocol the server selected ("netmsg.v2.json" or "netmsg.v1.json"). */
  readonly protocol: string;
  /** True when the server speaks revision 2 and answers PING envelopes. */
  readonly pings: boolean;
  /** Resolves with the CloseError once the connection has ended. */
  readonly closed: Promise<CloseError>;

  readonly #ws: WebSocketLike;
  readonly #cfg: SessionConfig;
  #resolveClosed!: (ce: CloseError) => void;
  #cause: CloseError | undefined;
  #ended = false;
  readonly #lifetime = new AbortController();

  #nextId = 0;
  readonly #pending = new Map<Id, PendingCall>();
  readonly #abandoned = new Set<Id>();

  readonly #inbox: Inbox;

  #lastRx = Date.now();
  #tick: ReturnType<typeof setInterval> | undefined;
  #pingSeq = 0;
  readonly #pingsOut = new Map<Id, number>(); // PINGs awaiting their PONG: id → performance.now()
  #rtt = 0;
  #graceTimer: Cancel | undefined;

  private constructor(ws: WebSocketLike, cfg: SessionConfig) {
    this.#ws = ws;
    this.#cfg = cfg;
    this.protocol = ws.protocol;
    this.pings = ws.protocol.startsWith(subprotocolV2);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#inbox = new Inbox({
      session: this,
      handlers: cfg.handlers,
      stats: cfg.stats,
      concurrency: cfg.concurrency,
      maxQueuedBytes: cfg.maxQueuedBytes,
      closingSignal: this.#lifetime.signal,
      onError: cfg.onError,
      onUnhandled: cfg.onUnhandled,
      reply: (e) => this.#reply(e),
      close: (ce) => this.closeWith(ce, "drop"),
    });
    ws.onmessage = (ev) => this.#onFrame(ev.data);
    ws.onclose = (ev) => this.#onSocketClose(ev.code, ev.reason);
    ws.onerror = () => {}; // the close event follows and says how it ended
    this.#startHeartbeat();
  }

  /**
   * Opens a connection to url and completes the WebSocket handshake. It
   * fails with a ConnectError when the handshake fails, takes longer than
   * timeoutMs, signal aborts, or the server selects no netmsg subprotocol.
   */
  static open(
    url: string,
    ctor: WebSocketConstructor,
    cfg: SessionConfig,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Session> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new ConnectError(url, "aborted", { cause: signal.reason }));
        return;
      }
      let ws: WebSocketLike;
      try {
        ws = new ctor(url, offeredSubprotocols);
      } catch (err) {
        reject(new ConnectError(url, String(err), { cause: err }));
        return;
      }
      ws.binaryType = "arraybuffer";
      let settled = false;
      let lastError: unknown;
      const onAbort = () => fail("aborted", signal?.reason);
      const cancelTimer = after(timeoutMs, () => fail(`no handshake within ${timeoutMs} ms`));
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle = () => {
        settled = true;
        cancelTimer();
        signal?.removeEventListener("abort", onAbort);
      };
      const fail = (detail: string, cause?: unknown) => {
        if (settled) return;
        settle();
        ws.onopen = ws.onclose = ws.onmessage = null;
        ws.onerror = () => {}; // an implementation may still report the abort
        try {
          ws.close();
        } catch {
          // not open yet in an implementation that refuses close() then
        }
        reject(new ConnectError(url, detail, { cause }));
      };
      ws.onerror = (ev: { error?: unknown; message?: unknown } | undefined) => {
        lastError = ev?.error ?? ev?.message ?? lastError;
      };
      ws.onclose = (ev) => {
        const detail = lastError instanceof Error ? lastError.message : lastError ? String(lastError) : "";
        fail(
          `connection closed during the handshake [${ev.code}]` + (ev.reason ? ": " + ev.reason : "") + (detail ? ": " + detail : ""),
          lastError,
        );
      };
      ws.onopen = () => {
        if (settled) return;
        if (!offeredSubprotocols.includes(ws.protocol)) {
          fail(`the server selected subprotocol "${ws.protocol}", not one of ${offeredSubprotocols.join(", ")}`);
          return;
        }
        settle();
        resolve(new Session(ws, cfg));
      };
    });
  }

  /** The round-trip time of the last PING, in milliseconds; 0 before the first PONG. */
  get rtt(): number {
    return this.#rtt;
  }

  /** Why the session closed, or undefined while it is open. */
  get err(): CloseError | undefined {
    return this.#ended ? this.#cause : undefined;
  }

  /** True once the session has begun to close. */
  get closing(): boolean {
    return this.#cause !== undefined;
  }

  /**
   * Sends a one-way message. It encodes msg, hands it to the WebSocket and
   * returns; it throws the CloseError when the session is closing, and a
   * MessageTooLargeError when the envelope is over maxMessageSize.
   */
  send<T>(t: MessageType<T>, msg: NoInfer<T>, options: { metadata?: Record<string, string> } = {}): void {
    if (this.#cause) throw this.#cause;
    const frame = encodeEnvelope({ kind: Kind.Message, type: t.name, payload: encodeJSON(msg), metadata: options.metadata });
    this.#write(frame);
  }

  /**
   * Sends a request and resolves with its response. It rejects with a
   * NetmsgError carrying the server's code when the server answers with an
   * error, Code.DeadlineExceeded when the timeout passes, Code.Canceled when
   * the signal aborts (then the server is sent a CANCEL and a late answer is
   * dropped), and the CloseError when the session closes first.
   */
  request<Req, Resp>(t: RequestType<Req, Resp>, req: NoInfer<Req>, options: CallOptions = {}): Promise<Resp> {
    const timeout = options.timeout ?? this.#cfg.requestTimeout;
    const deadline = timeout > 0 && Number.isFinite(timeout) ? Date.now() + timeout : undefined;
    return this.call(t.name, req, deadline, options.signal, options.metadata) as Promise<Resp>;
  }

  /**
   * call sends a request with an absolute deadline (ms since the epoch, or
   * undefined for none) and waits for its answer.
   */
  call(name: string, req: unknown, deadline: number | undefined, signal?: AbortSignal, metadata?: Record<string, string>): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(abortError(name, signal.reason)); // over before it began: send nothing
    if (deadline !== undefined && Date.now() >= deadline) return Promise.reject(timeoutError(name));
    if (this.#cause) return Promise.reject(this.#cause);
    let frame: Uint8Array;
    const id = ++this.#nextId;
    try {
      const timeoutMs = deadline === undefined ? 0 : Math.min(Math.max(1, Math.floor(deadline - Date.now())), Number.MAX_SAFE_INTEGER);
      frame = encodeEnvelope({ kind: Kind.Request, id, type: name, payload: encodeJSON(req), timeoutMs, metadata });
      this.#checkSize(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      let timer: Cancel | undefined;
      const onAbort = () => this.#giveUp(id, abortError(name, signal?.reason));
      const call: PendingCall = {
        name,
        resolve,
        reject,
        done: () => {
          timer?.();
          signal?.removeEventListener("abort", onAbort);
        },
      };
      if (deadline !== undefined) timer = at(deadline, () => this.#giveUp(id, timeoutError(name)));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(id, call);
      try {
        this.#push(frame);
      } catch (err) {
        this.#pending.delete(id);
        call.done();
        reject(err);
      }
    });
  }

  /**
   * Closes the session gracefully with close code 1000 and reason. Pending
   * calls fail at once with the CloseError and handlers' signals abort; the
   * returned promise resolves once the server has answered the close, or
   * after the disconnectTimeout.
   */
  close(reason = ""): Promise<CloseError> {
    this.closeWith(new CloseError(CloseReason.Normal, 1000, reason, false), "graceful");
    return this.closed;
  }

  /**
   * closeWith is where every close of the session begins: the first cause
   * wins; pending calls fail with it, handler signals abort, and the socket
   * is closed as mode says.
   */
  closeWith(ce: CloseError, mode: CloseMode): void {
    if (this.#cause) {
      if (mode !== "graceful" && !this.#ended) this.#finish();
      return;
    }
    this.#cause = ce;
    this.#stopHeartbeat();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const c of pending) {
      c.done();
      c.reject(ce);
    }
    this.#inbox.close(ce);
    this.#lifetime.abort(ce); // the signal of message handlers
    switch (mode) {
      case "graceful":
        closeSocket(this.#ws, ce.code, ce.text);
        this.#graceTimer = after(this.#cfg.disconnectTimeout, () => this.#finish());
        break;
      case "drop":
        // The link is dead or broken: tell the server if the socket still
        // takes it, but do not wait for an answer that may never come.
        closeSocket(this.#ws, ce.code === 1006 ? 1000 : ce.code, ce.text);
        this.#finish();
        break;
      case "ended":
        this.#finish();
        break;
    }
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#graceTimer?.();
    const ws = this.#ws;
    ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    this.#resolveClosed(this.#cause!);
  }

  #onSocketClose(code: number, reason: string): void {
    const remote = new CloseError(closeReasonForCode(code), code, reason, true);
    this.closeWith(remote, "ended");
  }

  #write(frame: Uint8Array): void {
    this.#checkSize(frame);
    if (this.#ws.readyState !== OPEN) throw this.#cause ?? new CloseError(CloseReason.NetworkError, 1006, "socket not open", false);
    this.#push(frame);
  }

  /**
   * Hands a frame to the WebSocket. The WebSocket API has no backpressure:
   * what the server does not read piles up in bufferedAmount, so a session
   * whose unsent bytes would pass maxQueuedBytes is closed as a slow
   * consumer (and the CloseError thrown), as the Go side closes a peer that
   * stops reading.
   */
  #push(frame: Uint8Array): void {
    if (this.#ws.bufferedAmount + frame.length > this.#cfg.maxQueuedBytes) {
      const ce = new CloseError(CloseReason.SlowConsumer, 1013, "outbound queue full", false);
      this.closeWith(ce, "drop");
      throw ce;
    }
    this.#ws.send(frame);
  }

  #checkSize(frame: Uint8Array): void {
    if (frame.length > this.#cfg.maxMessageSize) throw new MessageTooLargeError(frame.length, this.#cfg.maxMessageSize);
  }

  /** Sends a frame the session produced itself (answers, CANCEL, PING); a closed socket drops it. */
  #reply(e: Parameters<typeof encodeEnvelope>[0]): void {
    if (this.#ended || this.#ws.readyState !== OPEN) return;
    let frame = encodeEnvelope(e);
    if (frame.length > this.#cfg.maxMessageSize && e.kind === Kind.Response) {
      this.#cfg.onError(new MessageTooLargeError(frame.length, this.#cfg.maxMessageSize));
      frame = encodeEnvelope({ kind: Kind.Error, id: e.id, error: { code: Code.Internal, message: "internal error" } });
    }
    try {
      this.#push(frame);
    } catch {
      // The session closed as a slow consumer; its CloseError tells why.
    }
  }

  // ---- inbound ----

  #onFrame(data: unknown): void {
    this.#lastRx = Date.now();
    if (this.#ended) return;
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else {
      this.#protocolError("received a text frame; envelopes travel in binary frames");
      return;
    }
    if (bytes.length > this.#cfg.maxMessageSize) {
      const ce = new CloseError(CloseReason.MessageTooLarge, 1009, "message too large", false);
      this.closeWith(ce, "drop");
      this.#cfg.onError(new Error(`netmsg: received a ${bytes.length}-byte frame, the limit is ${this.#cfg.maxMessageSize}`));
      return;
    }
    let env: Envelope;
    try {
      env = decodeEnvelope(bytes);
    } catch (err) {
      this.#protocolError(err instanceof Error ? err.message : String(err));
      return;
    }
    switch (env.kind) {
      case Kind.Response:
      case Kind.Error:
        this.#deliver(env);
        return;
      case Kind.Cancel:
        this.#inbox.cancel(env.id);
        return;
      case Kind.Ping:
        this.#reply({ kind: Kind.Pong, id: env.id, payload: env.payload });
        return;
      case Kind.Pong: {
        const sentAt = this.#pingsOut.get(env.id);
        if (sentAt !== undefined) {
          this.#pingsOut.delete(env.id);
          this.#rtt = performance.now() - sentAt;
        }
        return;
      }
      case Kind.Message:
        this.#inbox.message(env);
        return;
      case Kind.Request:
        if (env.id === 0) {
          this.#protocolError("a REQUEST with id 0", "request id 0");
          return;
        }
        this.#inbox.request(env);
        return;
    }
  }

  #protocolError(detail: string, text = "malformed envelope"): void {
    this.#cfg.onError(new Error("netmsg: protocol error: " + detail));
    this.closeWith(new CloseError(CloseReason.ProtocolError, 1002, text, false), "drop");
  }

  #deliver(env: Envelope): void {
    const c = this.#pending.get(env.id);
    if (!c) {
      if (this.#abandoned.delete(env.id)) this.#cfg.stats.lateResponses++;
      else this.#cfg.stats.unknownResponses++;
      return;
    }
    this.#pending.delete(env.id);
    c.done();
    if (env.kind === Kind.Error) {
      c.reject(new NetmsgError(env.error?.code ?? Code.Unknown, env.error?.message ?? ""));
      return;
    }
    try {
      c.resolve(decodeJSON(env.payload));
    } catch (err) {
      c.reject(new NetmsgError(Code.InvalidArgument, `cannot decode the response to ${c.name}: ${String(err)}`, { cause: err }));
    }
  }

  /** Removes a call whose caller gave up, tells the server, and fails the call. */
  #giveUp(id: number, err: NetmsgError): void {
    const c = this.#pending.get(id);
    if (!c) return;
    this.#pending.delete(id);
    c.done();
    this.#abandoned.add(id);
    if (this.#abandoned.size > maxAbandoned) {
      const oldest = this.#abandoned.values().next().value;
      if (oldest !== undefined) this.#abandoned.delete(oldest);
    }
    this.#reply({ kind: Kind.Cancel, id });
    c.reject(err);
  }

  // ---- heartbeat ----

  /**
   * Every heartbeatInterval the session checks that something arrived within
   * the receiveTimeout and, when the server speaks revision 2, sends a PING
   * envelope, which the server answers with a PONG. A revision-1 server
   * cannot be probed, so there the receive timeout is not enforced: its
   * WebSocket pings keep the link alive, invisibly to a browser.
   */
  #startHeartbeat(): void {
    const { heartbeatInterval, receiveTimeout } = this.#cfg;
    const enforce = receiveTimeout > 0 && this.pings;
    const period = Math.min(heartbeatInterval > 0 ? heartbeatInterval : enforce ? receiveTimeout / 4 : 0, maxTimerDelay);
    if (period <= 0 || (!this.pings && !enforce)) return;
    this.#tick = setInterval(() => {
      const now = Date.now();
      if (enforce && now - this.#lastRx >= receiveTimeout) {
        this.closeWith(
          new CloseError(CloseReason.ConnectionLost, 1006, `nothing received for ${receiveTimeout} ms`, false),
          "drop",
        );
        return;
      }
      if (heartbeatInterval > 0 && this.pings) {
        this.#pingSeq++;
        this.#pingsOut.set(this.#pingSeq, performance.now());
        if (this.#pingsOut.size > maxPingsOut) this.#pingsOut.delete(this.#pingSeq - maxPingsOut);
        this.#reply({ kind: Kind.Ping, id: this.#pingSeq });
      }
    }, period);
  }

  #stopHeartbeat(): void {
    if (this.#tick !== undefined) clearInterval(this.#tick);
    this.#tick = undefined;
  }
}

/** The error of a request whose deadline passed. */
export function timeoutError(name: string, cause?: unknown): NetmsgError {
  return new NetmsgError(Code.DeadlineExceeded, `request ${name} timed out`, { cause });
}

/** The error of a request whose signal aborted (a TimeoutError reason counts as a deadline). */
export function abortError(name: string, reason: unknown): NetmsgError {
  if (isTimeoutReason(reason)) return timeoutError(name, reason);
  return new NetmsgError(Code.Canceled, `request ${name} canceled`, { cause: reason });
}
