// Type test: compiled by tsc in `npm test`, never run. Every line under a
// `@ts-expect-error` must fail to compile (tsc reports an unused directive
// otherwise), and typecheck.test.ts checks that each of them fails for its
// own line once the directive is taken away.

import { Client, NetmsgError, type HandlerContext, type ResponseOf } from "@netmsg/client";

import { Chat, Notice, SlowRequest, StatusRequest, WeatherRequest, type WeatherResponse } from "./gen/contract.js";

declare const client: Client;

export async function typed(): Promise<void> {
  // The response type comes from the request's contract.
  const w: WeatherResponse = await client.request(WeatherRequest, { City: "Bonn" });
  const forecast: string = w.Forecast;
  const temp: number = (await client.request(WeatherRequest, { City: "Bonn" })).TempC;
  const slept: number = (await client.request(SlowRequest, { Delay: 1e9 }, { timeout: 100 })).Slept;
  type R = ResponseOf<typeof WeatherRequest>;
  const r: R = w;
  void [forecast, temp, slept, r];

  // @ts-expect-error: a field the request does not have
  await client.request(WeatherRequest, { Town: "Bonn" });
  // @ts-expect-error: a field of the wrong type
  await client.request(WeatherRequest, { City: 53113 });
  // @ts-expect-error: a required field missing
  await client.request(WeatherRequest, {});
  // @ts-expect-error: another request's payload
  await client.request(WeatherRequest, { Delay: 1e9 });
  // @ts-expect-error: the response is a WeatherResponse, not a SlowResponse
  const wrong: { Slept: number } = await client.request(WeatherRequest, { City: "Bonn" });
  // @ts-expect-error: a message type where a request type belongs
  await client.request(Chat, { From: "a", Text: "b" });
  void wrong;

  await client.send(Chat, { From: "ts", Text: "hi" });
  // @ts-expect-error: a message's fields are checked too
  await client.send(Chat, { From: "ts" });
  // @ts-expect-error: a request type where a message type belongs
  await client.send(WeatherRequest, { City: "Bonn" });
}

export function handlers(): void {
  client.handle(StatusRequest, (_req, ctx: HandlerContext) => ({ Client: "ts", Notices: 0, Platform: ctx.type }));
  client.handle(StatusRequest, async () => ({ Client: "ts", Notices: 0, Platform: "node" }));
  client.handle(StatusRequest, () => {
    throw new NetmsgError(7, "not you");
  });
  // @ts-expect-error: the handler answers with the wrong response type
  client.handle(StatusRequest, () => ({ Forecast: "sunny" }));
  // @ts-expect-error: a response field of the wrong type
  client.handle(StatusRequest, async () => ({ Client: "ts", Notices: "none", Platform: "node" }));

  client.on(Notice, (n) => {
    const text: string = n.Text;
    void text;
  });
  client.on(Notice, (n) => {
    // @ts-expect-error: Notice has no field From
    void n.From;
  });
}
