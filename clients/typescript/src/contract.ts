// Type descriptors: the TypeScript side of a Go contract. A descriptor is a
// plain object with the wire type name; its type parameters carry the
// payload types so that tsc checks every call and handler against the
// contract, as the Go compiler does for SendRequest and AddRequestHandler.

/**
 * Describes a one-way message type T travelling under the wire name `name`
 * ("contract.Chat"). The optional `__message` property is never set: it only
 * carries T for the type checker.
 */
export interface MessageType<T> {
  readonly kind: "message";
  readonly name: string;
  readonly __message?: T;
}

/**
 * Describes a request type Req whose one response type is Resp, as a Go
 * request type that embeds netmsg.Returns[Resp] does. The optional
 * `__request` and `__response` properties are never set: they only carry the
 * types for the type checker.
 */
export interface RequestType<Req, Resp> {
  readonly kind: "request";
  readonly name: string;
  readonly __request?: Req;
  readonly __response?: Resp;
}

/** Returns the descriptor of a message type. */
export function messageType<T>(name: string): MessageType<T> {
  return { kind: "message", name };
}

/** Returns the descriptor of a request type and its response type. */
export function requestType<Req, Resp>(name: string): RequestType<Req, Resp> {
  return { kind: "request", name };
}

/** The payload type a message descriptor stands for. */
export type MessageOf<D> = D extends MessageType<infer T> ? T : never;
/** The request payload type a request descriptor stands for. */
export type RequestOf<D> = D extends RequestType<infer Req, unknown> ? Req : never;
/** The response payload type a request descriptor stands for. */
export type ResponseOf<D> = D extends RequestType<unknown, infer Resp> ? Resp : never;
