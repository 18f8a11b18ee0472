// netmsg client for browsers and Node: typed requests and messages both ways
// over the netmsg protocol (docs/PROTOCOL.md), with JSON payloads.

export { Client, type ClientOptions, type ConnState } from "./client.js";
export {
  Session,
  ConnectError,
  MessageTooLargeError,
  type CallOptions,
  type SendOptions,
  type Stats,
} from "./session.js";
export {
  Code,
  codeName,
  codeOf,
  NetmsgError,
  NotConnectedError,
  CloseError,
  CloseReason,
  closeReasonForCode,
  parseReconnectAfter,
  parseGoDuration,
} from "./errors.js";
export {
  messageType,
  requestType,
  type MessageType,
  type RequestType,
  type MessageOf,
  type RequestOf,
  type ResponseOf,
} from "./contract.js";
export type { HandlerContext, MessageHandler, RequestHandler } from "./handlers.js";
export { Backoff, backoffPolicy, type BackoffOptions, type BackoffPolicy } from "./backoff.js";
export {
  Kind,
  encodeEnvelope,
  decodeEnvelope,
  MalformedEnvelopeError,
  maxMetadataEntries,
  type Envelope,
  type Id,
} from "./envelope.js";
export { offeredSubprotocols, type WebSocketConstructor, type WebSocketLike } from "./transport.js";
