// Reconnect delays: exponential backoff with jitter, the policy of the Go
// library's DefaultBackOff.

/** How a client waits between reconnect attempts. Times in milliseconds. */
export interface BackoffOptions {
  /** The first delay before jitter. Default 500. */
  initialDelay?: number;
  /** Each delay is the previous one times this. Default 1.6. */
  multiplier?: number;
  /** Delays are spread by ± this fraction (0 to 1). Default 0.5. */
  jitter?: number;
  /** The largest delay before jitter. Default 30000. */
  maxDelay?: number;
  /** Stop after this many failed attempts in a row. Default Infinity. */
  maxAttempts?: number;
}

/** The reconnect policy with every option filled in. */
export type BackoffPolicy = Required<BackoffOptions>;

/** Fills in the defaults of a backoff policy. */
export function backoffPolicy(o: BackoffOptions = {}): BackoffPolicy {
  return {
    initialDelay: o.initialDelay ?? 500,
    multiplier: o.multiplier ?? 1.6,
    jitter: Math.min(Math.max(o.jitter ?? 0.5, 0), 1),
    maxDelay: o.maxDelay ?? 30_000,
    maxAttempts: o.maxAttempts ?? Infinity,
  };
}

/**
 * Backoff hands out the delays of one run of reconnect attempts: the n-th
 * delay is initialDelay × multiplier^(n-1), capped at maxDelay, spread
 * uniformly by ± jitter.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt, or undefined when the policy gives up. */
  next(): number | undefined {
    const p = this.policy;
    if (this.attempt >= p.maxAttempts) return undefined;
    const base = Math.min(p.initialDelay * p.multiplier ** this.attempt, p.maxDelay);
    this.attempt++;
    const spread = base * p.jitter;
    return Math.max(0, base - spread + this.random() * 2 * spread);
  }

  /** Starts over from the initial delay (after a connection that held). */
  reset(): void {
    this.attempt = 0;
  }

  /** How many delays were handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }
}
