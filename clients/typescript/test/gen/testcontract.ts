// Types of github.com/netmsg/netmsg/clients/typescript/testserver/testcontract,
// the test server's own contract, written with the package's helpers.

import { messageType, requestType } from "@netmsg/client";

export interface EchoRequest {
  Text: string;
}
export interface EchoResponse {
  Text: string;
  Metadata?: Record<string, string>;
  DeadlineMs: number;
  Session: string;
}
export interface FailRequest {
  Code: number;
  Message: string;
  Plain: boolean;
  Panic: boolean;
}
export interface FailResponse {}
export interface AddRequest {
  A: number;
  B: number;
  FailCode?: number;
  FailMessage?: string;
  Throw?: boolean;
  SleepMs?: number;
}
export interface AddResponse {
  Sum: number;
  Metadata?: Record<string, string>;
}
export interface AskRequest {
  Add: AddRequest;
  TimeoutMs: number;
  CancelAfterMs: number;
}
export interface AskResponse {
  Sum: number;
  Metadata: Record<string, string> | null;
  Code: number;
  Message: string;
  ElapsedMs: number;
}
export interface PushRequest {
  Count: number;
  Text: string;
}
export interface PushResponse {
  Sent: number;
}
export interface CloseRequest {
  Mode: "close" | "kick";
  Text: string;
  DelayMs: number;
}
export interface CloseResponse {}
export interface ObserveRequest {}
export interface CloseEvent {
  Session: string;
  Reason: string;
  Code: number;
  Text: string;
  Remote: boolean;
}
export interface ObserveResponse {
  Closes: CloseEvent[] | null;
  SlowEnds: string[] | null;
  RTTNs: number;
  Session: string;
  Sessions: number;
}

export const EchoRequest = requestType<EchoRequest, EchoResponse>("testcontract.EchoRequest");
export const FailRequest = requestType<FailRequest, FailResponse>("testcontract.FailRequest");
export const AddRequest = requestType<AddRequest, AddResponse>("testcontract.AddRequest");
export const AskRequest = requestType<AskRequest, AskResponse>("testcontract.AskRequest");
export const PushRequest = requestType<PushRequest, PushResponse>("testcontract.PushRequest");
export const CloseRequest = requestType<CloseRequest, CloseResponse>("testcontract.CloseRequest");
export const ObserveRequest = requestType<ObserveRequest, ObserveResponse>("testcontract.ObserveRequest");
