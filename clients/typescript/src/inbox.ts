// The server's messages and requests on one connection: queued in arrival
// order, handed to the client's handlers (one at a time by default), the
// requests in flight kept for CANCEL, and each request answered exactly
// once unless it was cancelled.

import { decodeJSON, encodeJSON } from "./json.js";
import type { Envelope, Id } from "./envelope.js";
import { Kind } from "./envelope.js";
import { CloseError, CloseReason, Code, isAbortReason, isTimeoutReason, NetmsgError } from "./errors.js";
import type { HandlerContext, Handlers } from "./handlers.js";
import type { Session, Stats } from "./session.js";
import { after, type Cancel } from "./timers.js";

/** What the inbox needs from its session. */
export interface InboxHost {
  readonly session: Session;
  readonly handlers: Handlers;
  readonly stats: Stats;
  readonly concurrency: number;
  readonly maxQueuedBytes: number;
  /** Aborted when the session begins to close: the signal of message handlers. */
  readonly closingSignal: AbortSignal;
  onError(err: unknown): void;
  onUnhandled(type: string): void;
  /** Sends an answer; a closed connection drops it. */
  reply(e: { kind: Kind; id: Id; payload?: Uint8Array; error?: { code: number; message: string } }): void;
  /** Closes the session for a reason of this side's. */
  close(ce: CloseError): void;
}

interface InflightRequest {
  ctl: AbortController; // aborted by CANCEL, the deadline, or the close
  timer: Cancel | undefined;
}

interface Inbound {
  env: Envelope;
  req?: InflightRequest;
  cost: number; // what it holds, counted against maxQueuedBytes
}

/** What a queued envelope costs beyond its payload (the decoded envelope, its handler's state). */
const inboundOverhead = 256;

/** Inbox queues the server's messages and requests of one session for the handlers. */
export class Inbox {
  readonly #host: InboxHost;
  readonly #inflight = new Map<Id, InflightRequest>();
  readonly #queue: Inbound[] = [];
  #queueBytes = 0;
  #running = 0;
  #closed = false;

  constructor(host: InboxHost) {
    this.#host = host;
  }

  /** Takes a MESSAGE. */
  message(env: Envelope): void {
    if (this.#closed) return; // arrived after the close began
    this.#enqueue({ env, cost: env.payload.length + inboundOverhead });
  }

  /** Takes a REQUEST (its id is not 0). */
  request(env: Envelope): void {
    if (this.#closed) {
      this.#host.stats.droppedInbound++;
      return;
    }
    if (this.#inflight.has(env.id)) {
      this.#host.reply({ kind: Kind.Error, id: env.id, error: { code: Code.AlreadyExists, message: `request id ${env.id} is already in flight` } });
      return;
    }
    const r: InflightRequest = { ctl: new AbortController(), timer: undefined };
    if (env.timeoutMs > 0) {
      r.timer = after(env.timeoutMs, () => r.ctl.abort(new DOMException("deadline exceeded", "TimeoutError")));
    }
    this.#inflight.set(env.id, r);
    this.#enqueue({ env, req: r, cost: env.payload.length + inboundOverhead });
  }

  /** Takes a CANCEL: the request's handler is aborted and its answer will not be sent. */
  cancel(id: Id): void {
    const r = this.#inflight.get(id);
    if (!r) return; // unknown or finished: ignored
    this.#inflight.delete(id);
    r.timer?.();
    r.ctl.abort(new DOMException("the caller canceled the request", "AbortError"));
  }

  /**
   * The session began to close: every request's signal aborts with ce (none
   * can be answered any more) and nothing new is taken. Messages already
   * queued still reach their handlers, as on the Go side.
   */
  close(ce: CloseError): void {
    this.#closed = true;
    for (const r of this.#inflight.values()) {
      r.timer?.();
      r.ctl.abort(ce);
    }
  }

  /**
   * Queues an envelope for the handlers. The WebSocket API cannot stop
   * reading, so what the server sends faster than the handlers take it is
   * bounded by maxQueuedBytes: an envelope that would pass it (unless the
   * queue is empty) is dropped, counted, and the session closed as a slow
   * consumer.
   */
  #enqueue(item: Inbound): void {
    const host = this.#host;
    if (this.#queue.length > 0 && this.#queueBytes + item.cost > host.maxQueuedBytes) {
      host.stats.droppedInbound++;
      if (item.req) this.#finish(item.env.id, item.req);
      host.close(new CloseError(CloseReason.SlowConsumer, 1013, "inbound queue full", false));
      host.onError(new Error(`netmsg: dropped a ${item.env.type} and closed: the handlers are ${this.#queueBytes} bytes behind`));
      return;
    }
    this.#queue.push(item);
    this.#queueBytes += item.cost;
    this.#pump();
  }

  /** Starts handlers, in arrival order, while fewer than concurrency run. */
  #pump(): void {
    while (this.#running < this.#host.concurrency && this.#queue.length > 0) {
      const item = this.#queue.shift()!;
      this.#queueBytes -= item.cost;
      this.#running++;
      void this.#handle(item).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }

  async #handle(item: Inbound): Promise<void> {
    const { env } = item;
    if (item.req) {
      await this.#handleRequest(env, item.req);
      return;
    }
    const host = this.#host;
    const handlers = host.handlers.message(env.type);
    if (!handlers || handlers.length === 0) {
      host.stats.unhandled++;
      host.onUnhandled(env.type);
      return;
    }
    let msg: unknown;
    try {
      msg = decodeJSON(env.payload);
    } catch (err) {
      host.onError(new Error(`netmsg: dropped a ${env.type} message that does not decode: ${String(err)}`, { cause: err }));
      return;
    }
    const ctx = this.#context(env, host.closingSignal, undefined);
    for (const h of handlers) {
      try {
        await h(msg, ctx);
      } catch (err) {
        host.onError(err);
      }
    }
  }

  async #handleRequest(env: Envelope, r: InflightRequest): Promise<void> {
    const host = this.#host;
    const signal = r.ctl.signal;
    if (signal.aborted) {
      // Cancelled or timed out while queued, or the session is closing: the
      // caller has stopped waiting (or can no longer be answered).
      this.#finish(env.id, r);
      if (this.#closed) host.stats.droppedInbound++;
      return;
    }
    const h = host.handlers.request(env.type);
    if (!h) {
      host.stats.unhandled++;
      if (this.#finish(env.id, r)) {
        host.reply({ kind: Kind.Error, id: env.id, error: { code: Code.Unimplemented, message: "no handler for " + env.type } });
      }
      return;
    }
    let req: unknown;
    try {
      req = decodeJSON(env.payload);
    } catch (err) {
      if (this.#finish(env.id, r)) {
        host.reply({ kind: Kind.Error, id: env.id, error: { code: Code.InvalidArgument, message: `cannot decode ${env.type}: ${String(err)}` } });
      }
      return;
    }
    const deadline = env.timeoutMs > 0 ? Date.now() + env.timeoutMs : undefined;
    let resp: unknown;
    let failure: { err: unknown } | undefined;
    try {
      resp = await h(req, this.#context(env, signal, deadline));
    } catch (err) {
      failure = { err };
    }
    if (!this.#finish(env.id, r)) return; // cancelled, or the session closed: nobody waits for the answer
    if (failure) {
      const [code, message] = wireError(failure.err);
      if (code === Code.Internal && !(failure.err instanceof NetmsgError)) host.onError(failure.err);
      host.reply({ kind: Kind.Error, id: env.id, error: { code, message } });
      return;
    }
    let payload: Uint8Array;
    try {
      payload = encodeJSON(resp);
    } catch (err) {
      host.onError(err);
      host.reply({ kind: Kind.Error, id: env.id, error: { code: Code.Internal, message: "internal error" } });
      return;
    }
    host.reply({ kind: Kind.Response, id: env.id, payload });
  }

  /** Ends request id; true when its caller still waits for the answer. */
  #finish(id: Id, r: InflightRequest): boolean {
    r.timer?.();
    if (this.#inflight.get(id) !== r) return false;
    this.#inflight.delete(id);
    return !this.#closed;
  }

  #context(env: Envelope, signal: AbortSignal, deadline: number | undefined): HandlerContext {
    return { type: env.type, metadata: env.metadata, session: this.#host.session, signal, deadline };
  }
}

/** What a handler's thrown error is answered with, as Go's wireError maps it. */
export function wireError(err: unknown): [Code, string] {
  if (err instanceof NetmsgError) return [err.code, err.rawMessage];
  if (isTimeoutReason(err)) return [Code.DeadlineExceeded, "deadline exceeded"];
  if (isAbortReason(err)) return [Code.Canceled, "canceled"];
  return [Code.Internal, "internal error"];
}
