// Client: the first connection, the reconnect loop, wait-for-ready and the
// client's own handlers, as the Go library's Client does them (client.go).

import { Backoff, backoffPolicy, type BackoffOptions } from "./backoff.js";
import type { MessageType, RequestType } from "./contract.js";
import { CloseError, CloseReason, Code, NotConnectedError } from "./errors.js";
import { Handlers, type MessageHandler, type RequestHandler } from "./handlers.js";
import {
  abortError,
  type CallOptions,
  type SendOptions,
  Session,
  type SessionConfig,
  type Stats,
  timeoutError,
} from "./session.js";
import { after, at, type Cancel } from "./timers.js";
import { resolveWebSocket, type WebSocketConstructor } from "./transport.js";

/** The state of a client's connection, as Go's ConnState names it. */
export type ConnState = "disconnected" | "connecting" | "connected" | "closed";

/** Options of a Client. Times are in milliseconds. */
export interface ClientOptions {
  /**
   * The WebSocket constructor. Default: the global WebSocket (browsers,
   * Node 22+). On Node 20 pass the `ws` package's WebSocket.
   */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its answer unless it says otherwise. Default 10000. */
  requestTimeout?: number;
  /** How often the client sends a PING envelope (revision-2 servers). Default 5000; 0 sends none. */
  heartbeatInterval?: number;
  /**
   * A connection on which nothing arrives for this long is closed with
   * CloseReason.ConnectionLost (and replaced, with reconnect on). Default
   * 15000; 0 turns the check off. Enforced only when the server answers PING
   * envelopes (subprotocol netmsg.v2.json).
   */
  receiveTimeout?: number;
  /** How long a connection attempt (the WebSocket handshake) may take. Default 10000. */
  connectTimeout?: number;
  /** How long a graceful close waits for the server's close frame. Default 3000. */
  disconnectTimeout?: number;
  /** The largest envelope, in bytes, sent or accepted. Default 1 MiB. */
  maxMessageSize?: number;
  /**
   * Bounds, in bytes, what waits on each side: envelopes sent but not yet
   * taken by the network (the WebSocket's bufferedAmount) and the server's
   * envelopes waiting for a handler. Past it the connection is closed with
   * CloseReason.SlowConsumer. Default 4 MiB.
   */
  maxQueuedBytes?: number;
  /** How many of the server's messages and requests are handled at once. Default 1: in arrival order. */
  concurrency?: number;
  /**
   * Reconnect after a lost connection, waiting between attempts as the
   * backoff options say (true: the defaults, 500 ms ×1.6 ±50 % up to 30 s,
   * never giving up). The server's reconnect hint ("reconnect-after=") is a
   * floor under the first delay, with the jittered delay added on top. A
   * policy-violation close (1008, kicked) stops the client. Default off.
   */
  reconnect?: boolean | BackoffOptions;
  /**
   * Make send and request fail at once with NotConnectedError while the
   * client reconnects, instead of waiting for the connection (bounded by the
   * call's timeout or signal). Default false (wait-for-ready).
   */
  failFast?: boolean;
  /**
   * Runs after every connection is made and before the client counts as
   * connected: calls waiting for the connection proceed only once it has
   * resolved. Use the session it is given (calls on the client itself would
   * wait for it). A rejection closes the connection and counts as a failed
   * attempt.
   */
  onConnect?: (session: Session, signal: AbortSignal) => void | Promise<void>;
  /** Runs once for every connection that completed the handshake, when it has ended. */
  onDisconnect?: (err: CloseError) => void;
  /** Runs before each reconnect attempt with its number, its delay and what it replaces. */
  onReconnecting?: (attempt: number, delay: number, cause: unknown) => void;
  /** Runs on every state change. */
  onStateChange?: (state: ConnState) => void;
  /** Receives errors that have no caller: handler failures, malformed frames. Default: console.error. */
  onError?: (err: unknown) => void;
  /** Runs for a message or request of a type with no handler. */
  onUnhandled?: (type: string) => void;
  /** The random source of the backoff's jitter, for tests. */
  random?: () => number;
}

/** How long a connection must stay up for the reconnect backoff to start over. */
const stableConnection = 5000;

/**
 * Client is one end of a connection to a netmsg server. It sends messages
 * and requests, answers the server's with its handlers, and, with the
 * reconnect option, keeps itself connected until close().
 *
 * Calls made while the client reconnects wait for the connection
 * (wait-for-ready), bounded by their timeout or signal, unless failFast is
 * set; without reconnect they fail at once with NotConnectedError.
 */
export class Client {
  /** Counters of dropped and late traffic. */
  readonly stats: Stats = { lateResponses: 0, unknownResponses: 0, droppedInbound: 0, unhandled: 0 };
  /** Resolves once the client will not connect again: after close(), or when reconnecting stopped for good. */
  readonly done: Promise<void>;

  readonly #url: string;
  readonly #opts: ClientOptions;
  readonly #ws: WebSocketConstructor;
  readonly #handlers = new Handlers();
  readonly #cfg: SessionConfig;
  readonly #backoff: Backoff | undefined;
  readonly #lifetime = new AbortController(); // aborted by close()

  #state: ConnState = "disconnected";
  #session: Session | undefined; // the current session, while connected
  #setup: Session | undefined; // a session still in onConnect
  #running = false; // connect() or the supervisor is at work
  #err: unknown;
  #ready = deferred();
  #resolveDone!: () => void;
  #closing: Promise<void> | undefined;

  constructor(url: string, options: ClientOptions = {}) {
    this.#url = url;
    this.#opts = options;
    this.#ws = resolveWebSocket(options.WebSocket);
    const onError = options.onError ?? ((err: unknown) => console.error(err));
    this.#cfg = {
      requestTimeout: options.requestTimeout ?? 10_000,
      heartbeatInterval: options.heartbeatInterval ?? 5_000,
      receiveTimeout: options.receiveTimeout ?? 15_000,
      disconnectTimeout: options.disconnectTimeout ?? 3_000,
      maxMessageSize: options.maxMessageSize ?? 1 << 20,
      maxQueuedBytes: options.maxQueuedBytes ?? 4 << 20,
      concurrency: Math.max(1, options.concurrency ?? 1),
      handlers: this.#handlers,
      stats: this.stats,
      onError: (err) => callback(onError, err),
      onUnhandled: (type) => options.onUnhandled && callback(options.onUnhandled, type),
    };
    if (options.reconnect) {
      this.#backoff = new Backoff(backoffPolicy(options.reconnect === true ? {} : options.reconnect), options.random);
    }
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** The connection's state. */
  get state(): ConnState {
    return this.#state;
  }

  /** The current session, or undefined while not connected. */
  get session(): Session | undefined {
    return this.#state === "connected" && this.#session && !this.#session.closing ? this.#session : undefined;
  }

  /** Why the client stopped, once done has resolved; undefined before. */
  get err(): unknown {
    return this.#err;
  }

  /** The round-trip time the last PING measured, in milliseconds; 0 before. */
  get rtt(): number {
    return this.#session?.rtt ?? 0;
  }

  /**
   * Registers the handler for the server's requests of type t and returns a
   * function that removes it. One request handler per type: a second
   * registration throws. Handlers may be registered at any time.
   */
  handle<Req, Resp>(t: RequestType<Req, Resp>, handler: RequestHandler<NoInfer<Req>, NoInfer<Resp>>): () => void {
    return this.#handlers.handle(t, handler);
  }

  /**
   * Adds a handler for the server's messages of type t and returns a
   * function that removes it. All handlers of a type run, in registration
   * order.
   */
  on<T>(t: MessageType<T>, handler: MessageHandler<NoInfer<T>>): () => void {
    return this.#handlers.on(t, handler);
  }

  /**
   * Makes the first connection: opens the WebSocket, completes the handshake
   * and runs onConnect. With reconnect, a failed attempt is retried on the
   * backoff until signal aborts; once connected the client keeps itself
   * connected until close(). Without reconnect, connect may be called again
   * after the connection has ended.
   */
  async connect(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#state === "closed") throw this.#closedError();
    if (this.#running || this.#state !== "disconnected") {
      throw new Error("netmsg: connect called while already connected or connecting");
    }
    this.#running = true;
    this.#setState("connecting");
    const signal = options.signal ? AbortSignal.any([options.signal, this.#lifetime.signal]) : this.#lifetime.signal;
    let s: Session;
    try {
      try {
        s = await this.#connectOnce(signal);
      } catch (err) {
        if (!this.#backoff || signal.aborted) throw err;
        this.#backoff.reset();
        s = await this.#retry(err, signal);
      }
    } catch (err) {
      this.#running = false;
      if (this.#is("connecting")) this.#setState("disconnected");
      this.#wakeWaiters();
      if (this.#lifetime.signal.aborted) throw this.#closedError();
      throw err;
    }
    void this.#supervise(s);
  }

  /**
   * Sends a one-way message to the server. While the client reconnects it
   * waits for the connection as request does. It rejects when there is no
   * connection to wait for (NotConnectedError), when the message is too large
   * (MessageTooLargeError), or with the CloseError of a connection that is
   * closing.
   */
  async send<T>(t: MessageType<T>, msg: NoInfer<T>, options: SendOptions = {}): Promise<void> {
    const timeout = options.timeout ?? this.#cfg.requestTimeout;
    const deadline = timeout > 0 && Number.isFinite(timeout) ? Date.now() + timeout : undefined;
    const s = await this.#sessionFor(t.name, deadline, options.signal);
    s.send(t, msg, { metadata: options.metadata });
  }

  /**
   * Sends a request and resolves with its typed response; see
   * Session.request for how it fails. The timeout counts from this call,
   * including the wait for a connection while the client reconnects.
   */
  async request<Req, Resp>(t: RequestType<Req, Resp>, req: NoInfer<Req>, options: CallOptions = {}): Promise<Resp> {
    const timeout = options.timeout ?? this.#cfg.requestTimeout;
    const deadline = timeout > 0 && Number.isFinite(timeout) ? Date.now() + timeout : undefined;
    const s = await this.#sessionFor(t.name, deadline, options.signal);
    return (await s.call(t.name, req, deadline, options.signal, options.metadata)) as Resp;
  }

  /**
   * Stops reconnecting and closes the connection gracefully (close code
   * 1000, "client closed"). Pending calls fail with the CloseError. It
   * resolves once the connection has ended, at most disconnectTimeout later;
   * later calls return the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const s = this.#session;
    const setup = this.#setup;
    this.#session = undefined;
    this.#setState("closed");
    this.#wakeWaiters();
    this.#lifetime.abort(this.#closedError());
    const closing = new CloseError(CloseReason.Normal, 1000, "client closed", false);
    const waits: Promise<unknown>[] = [];
    for (const x of [s, setup]) {
      if (x) {
        x.closeWith(closing, "graceful");
        waits.push(x.closed);
      }
    }
    await Promise.all(waits);
    this.#finish(this.#closedError());
  }

  /** Reads the state afresh (after an await, where tsc would narrow a field). */
  #is(s: ConnState): boolean {
    return this.#state === s;
  }

  #closedError(): CloseError {
    return new CloseError(CloseReason.Normal, 1000, "client closed", false);
  }

  #setState(s: ConnState): void {
    if (this.#state === s) return;
    this.#state = s;
    const f = this.#opts.onStateChange;
    if (f) callback(f, s);
  }

  /** Wakes the calls waiting for a connection so that they look at the state again. */
  #wakeWaiters(): void {
    this.#ready.resolve();
    this.#ready = deferred();
  }

  #finish(err: unknown): void {
    if (this.#err === undefined) this.#err = err;
    this.#resolveDone();
  }

  /** Opens a session and runs onConnect; on success the session is current. */
  async #connectOnce(signal: AbortSignal): Promise<Session> {
    const s = await Session.open(this.#url, this.#ws, this.#cfg, this.#opts.connectTimeout ?? 10_000, signal);
    if (this.#state === "closed") {
      await s.close("client closed");
      throw this.#closedError();
    }
    this.#setup = s;
    try {
      const f = this.#opts.onConnect;
      if (f) {
        const ctl = new AbortController();
        const stop = () => ctl.abort(signal.reason);
        signal.addEventListener("abort", stop, { once: true });
        void s.closed.then((ce) => ctl.abort(ce));
        try {
          await f(s, ctl.signal);
        } catch (err) {
          s.closeWith(new CloseError(CloseReason.Normal, 1000, "on-connect failed", false), "graceful");
          const ce = await s.closed;
          callback(this.#disconnected, ce);
          throw new Error("netmsg: onConnect: " + (err instanceof Error ? err.message : String(err)), { cause: err });
        } finally {
          signal.removeEventListener("abort", stop);
        }
      }
      if (this.#is("closed")) {
        await s.close("client closed");
        throw this.#closedError();
      }
      if (s.closing) {
        // It ended while onConnect ran: it never becomes current.
        const ce = await s.closed;
        callback(this.#disconnected, ce);
        throw ce;
      }
      this.#session = s;
      this.#setState("connected");
      this.#ready.resolve(); // stays resolved while connected
      return s;
    } finally {
      if (this.#setup === s) this.#setup = undefined;
    }
  }

  #disconnected = (ce: CloseError): void => {
    this.#opts.onDisconnect?.(ce);
  };

  /**
   * Watches the current session and, with reconnect, replaces it when it
   * ends. It is the only place that moves the client out of "connected".
   */
  async #supervise(s: Session): Promise<void> {
    for (;;) {
      const upAt = Date.now();
      const ce = await s.closed;
      const reconnect = this.#backoff !== undefined && ce.shouldReconnect && !this.#lifetime.signal.aborted;
      if (this.#session === s) {
        this.#session = undefined;
        if (this.#state === "connected") {
          this.#setState(reconnect ? "connecting" : "disconnected");
          this.#ready = deferred();
        }
      }
      if (!reconnect) this.#running = false;
      callback(this.#disconnected, ce);
      if (this.#lifetime.signal.aborted) return;
      if (!this.#backoff) {
        this.#wakeWaiters();
        return;
      }
      if (!ce.shouldReconnect) {
        this.#stop(ce);
        return;
      }
      if (Date.now() - upAt >= stableConnection) this.#backoff.reset();
      try {
        s = await this.#retry(ce, this.#lifetime.signal);
      } catch (err) {
        if (!this.#lifetime.signal.aborted) this.#stop(err);
        return;
      }
    }
  }

  /**
   * Makes connection attempts on the backoff until one succeeds, signal
   * aborts or the backoff gives up. A reconnect hint in cause is a floor for
   * the first delay; the jittered backoff delay is added on top, so that
   * clients told to come back after the same hint do not all come back at
   * the same moment.
   */
  async #retry(cause: unknown, signal: AbortSignal): Promise<Session> {
    const backoff = this.#backoff!;
    const hint = cause instanceof CloseError ? cause.reconnectAfter : 0;
    for (let attempt = 1; ; attempt++) {
      let d = backoff.next();
      if (d === undefined) {
        throw new Error(`netmsg: reconnect gave up after ${attempt - 1} attempts`, { cause });
      }
      if (attempt === 1) d += hint;
      const f = this.#opts.onReconnecting;
      if (f) callback(() => f(attempt, d, cause));
      await sleep(d, signal);
      if (this.#state === "closed") throw this.#closedError();
      this.#setState("connecting");
      try {
        return await this.#connectOnce(signal);
      } catch (err) {
        if (this.#lifetime.signal.aborted) throw this.#closedError();
        if (signal.aborted) throw err;
        cause = err;
      }
    }
  }

  /** Ends the client for good with err. */
  #stop(err: unknown): void {
    this.#running = false;
    this.#setState("closed");
    this.#wakeWaiters();
    this.#finish(err);
  }

  /**
   * Returns the session to send on. While the client reconnects it waits for
   * the connection until the deadline passes or signal aborts, unless
   * failFast is set; without reconnect it fails at once.
   */
  async #sessionFor(name: string, deadline: number | undefined, signal: AbortSignal | undefined): Promise<Session> {
    for (;;) {
      if (signal?.aborted) throw abortError(name, signal.reason);
      const s = this.#session;
      if (this.#state === "connected" && s && !s.closing) return s;
      if (this.#state === "connected" && s) {
        // Closing: wait until it has ended and the client has moved on.
        await raceWait(name, s.closed, deadline, signal);
        await Promise.resolve(); // let the supervisor see the end first
        continue;
      }
      if (this.#state === "closed") {
        throw this.#lifetime.signal.aborted ? this.#closedError() : new NotConnectedError("the client stopped reconnecting", Code.Unavailable, { cause: this.#err });
      }
      const waiting = this.#backoff !== undefined && !this.#opts.failFast && (this.#running || this.#state === "connecting");
      if (!waiting) throw new NotConnectedError();
      await raceWait(name, this.#ready.promise, deadline, signal);
    }
  }
}

/** Waits for p, failing with NotConnectedError when the deadline passes or signal aborts first. */
async function raceWait(name: string, p: Promise<unknown>, deadline: number | undefined, signal: AbortSignal | undefined): Promise<void> {
  if (deadline === undefined && !signal) {
    await p;
    return;
  }
  let timer: Cancel | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        if (deadline !== undefined) {
          timer = at(deadline, () =>
            reject(new NotConnectedError("no connection before the deadline", Code.DeadlineExceeded, { cause: timeoutError(name) })),
          );
        }
        if (signal) {
          onAbort = () => {
            const e = abortError(name, signal.reason);
            reject(new NotConnectedError("aborted while waiting for a connection", e.code, { cause: e }));
          };
          signal.addEventListener("abort", onAbort, { once: true });
        }
      }),
    ]);
  } finally {
    timer?.();
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

/** Resolves after ms, or rejects with signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      cancel();
      reject(signal.reason);
    };
    const cancel = after(ms, () => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Runs a user callback; what it throws is logged, never propagated into the client. */
function callback<A extends unknown[]>(f: (...args: A) => unknown, ...args: A): void {
  try {
    const r = f(...args);
    if (r instanceof Promise) r.catch((err: unknown) => console.error("netmsg: callback failed:", err));
  } catch (err) {
    console.error("netmsg: callback failed:", err);
  }
}
