// The handler table a client keeps for what the server sends: one request
// handler per type, any number of message handlers per type.

import type { MessageType, RequestType } from "./contract.js";
import type { Session } from "./session.js";

/** What a handler gets besides the payload. */
export interface HandlerContext {
  /** The wire type name of what is handled. */
  readonly type: string;
  /** The metadata the sender attached. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The connection it arrived on; answer or call back through it. */
  readonly session: Session;
  /**
   * Aborted when the caller cancels the request (CANCEL), when its deadline
   * passes (the reason is then a TimeoutError) or when the connection closes.
   * For a message it is aborted only when the connection closes.
   */
  readonly signal: AbortSignal;
  /** When the caller gives up, in milliseconds since the epoch; undefined when it sent no deadline. */
  readonly deadline: number | undefined;
}

/**
 * Answers a request from the server. Return (or resolve) the response; throw
 * a NetmsgError to answer with its code and message. Throwing the signal's
 * reason answers Code.DeadlineExceeded or Code.Canceled; anything else is
 * answered as Code.Internal with the text "internal error" (and reported to
 * onError), as the Go library does.
 */
export type RequestHandler<Req, Resp> = (req: Req, ctx: HandlerContext) => Resp | Promise<Resp>;

/** Handles a one-way message from the server. */
export type MessageHandler<T> = (msg: T, ctx: HandlerContext) => void | Promise<void>;

type AnyRequestHandler = (req: unknown, ctx: HandlerContext) => unknown;
type AnyMessageHandler = (msg: unknown, ctx: HandlerContext) => unknown;

/** The handler table; lookups see a consistent snapshot (copy on write). */
export class Handlers {
  private requests = new Map<string, AnyRequestHandler>();
  private messages = new Map<string, readonly AnyMessageHandler[]>();

  /** Registers the request handler for t; a second one for the same type throws. */
  handle<Req, Resp>(t: RequestType<Req, Resp>, h: RequestHandler<Req, Resp>): () => void {
    if (this.requests.has(t.name)) {
      throw new Error(`netmsg: a request handler for ${t.name} is registered already`);
    }
    const erased = h as AnyRequestHandler;
    this.requests.set(t.name, erased);
    return () => {
      if (this.requests.get(t.name) === erased) this.requests.delete(t.name);
    };
  }

  /** Adds a message handler for t; all handlers of a type run, in registration order. */
  on<T>(t: MessageType<T>, h: MessageHandler<T>): () => void {
    const erased = h as AnyMessageHandler;
    this.messages.set(t.name, [...(this.messages.get(t.name) ?? []), erased]);
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      const list = [...(this.messages.get(t.name) ?? [])];
      const i = list.indexOf(erased);
      if (i >= 0) list.splice(i, 1);
      if (list.length > 0) this.messages.set(t.name, list);
      else this.messages.delete(t.name);
    };
  }

  request(name: string): AnyRequestHandler | undefined {
    return this.requests.get(name);
  }

  message(name: string): readonly AnyMessageHandler[] | undefined {
    return this.messages.get(name);
  }
}
