// Types of github.com/netmsg/netmsg/examples/typesafe/contract, written by
// hand in the shape cmd/netmsg-ts generates (see README, "Types from the Go
// contract") until the generator lands.

/** WeatherRequest asks the server for a city's forecast. */
export interface WeatherRequest {
  City: string;
}
export interface WeatherResponse {
  City: string;
  Forecast: string;
  TempC: number;
}
export interface SlowRequest {
  /** time.Duration: nanoseconds. */
  Delay: number;
}
export interface SlowResponse {
  /** time.Duration: nanoseconds. */
  Slept: number;
}
export interface StatusRequest {}
export interface StatusResponse {
  Client: string;
  Notices: number;
  Platform: string;
}
export interface Chat {
  From: string;
  Text: string;
}
export interface Notice {
  Text: string;
}

export const WeatherRequest = { kind: "request", name: "contract.WeatherRequest" } as {
  readonly kind: "request";
  readonly name: "contract.WeatherRequest";
  readonly __request?: WeatherRequest;
  readonly __response?: WeatherResponse;
};
export const SlowRequest = { kind: "request", name: "contract.SlowRequest" } as {
  readonly kind: "request";
  readonly name: "contract.SlowRequest";
  readonly __request?: SlowRequest;
  readonly __response?: SlowResponse;
};
export const StatusRequest = { kind: "request", name: "contract.StatusRequest" } as {
  readonly kind: "request";
  readonly name: "contract.StatusRequest";
  readonly __request?: StatusRequest;
  readonly __response?: StatusResponse;
};
export const Chat = { kind: "message", name: "contract.Chat" } as {
  readonly kind: "message";
  readonly name: "contract.Chat";
  readonly __message?: Chat;
};
export const Notice = { kind: "message", name: "contract.Notice" } as {
  readonly kind: "message";
  readonly name: "contract.Notice";
  readonly __message?: Notice;
};
