// Starts the Go test server (clients/typescript/testserver, built by
// `npm run build:test` into build/testserver) for a test.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The package's root directory (clients/typescript). */
export const packageRoot = fileURLToPath(new URL("../../", import.meta.url));
const binary = fileURLToPath(new URL("../testserver", import.meta.url));

/** A running test server process. */
export interface TestServer {
  /** host:port of the server. */
  addr: string;
  /** host:port of the relay in front of it (internal/faultnet), which can blackhole a link. */
  relay: string;
  /** The WebSocket URL, directly and through the relay. */
  url: string;
  relayUrl: string;
  /** http://addr */
  http: string;
  /** Resolves with the next "RESULT <json>" line's value. */
  nextResult(timeoutMs: number): Promise<unknown>;
  /** Calls a control endpoint (POST /control/NAME?query). */
  control(name: string, query?: Record<string, string>): Promise<void>;
  /** Stops the server gracefully and waits for the process to exit. */
  stop(): Promise<void>;
  /** Kills the process at once (SIGKILL), like a crash. */
  kill(): Promise<void>;
  /** What the server logged, for failure messages. */
  log(): string;
}

/** Starts a test server; addr pins its port (for a restart on the same one). */
export async function startServer(options: { addr?: string; args?: string[] } = {}): Promise<TestServer> {
  const args = ["-addr", options.addr ?? "127.0.0.1:0", "-static", packageRoot, ...(options.args ?? [])];
  const proc = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
    if (process.env.TESTSERVER_LOG) process.stderr.write(chunk);
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const lines = createInterface({ input: proc.stdout! });
  const results: unknown[] = [];
  const waiters: ((v: unknown) => void)[] = [];
  let hello: (line: string) => void;
  const first = new Promise<string>((resolve) => (hello = resolve));
  let seenHello = false;
  lines.on("line", (line) => {
    if (!seenHello) {
      seenHello = true;
      hello(line);
      return;
    }
    if (line.startsWith("RESULT ")) {
      const v: unknown = JSON.parse(line.slice(7));
      const w = waiters.shift();
      if (w) w(v);
      else results.push(v);
    }
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const line = await Promise.race([
    first,
    exited.then(() => {
      throw new Error("testserver exited before it listened:\n" + stderr);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("testserver did not start within 30 s:\n" + stderr)), 30_000);
    }),
  ]).finally(() => clearTimeout(timer));
  const { addr, relay } = JSON.parse(line) as { addr: string; relay: string };
  return {
    addr,
    relay,
    url: `ws://${addr}/ws`,
    relayUrl: `ws://${relay}/ws`,
    http: `http://${addr}`,
    nextResult(timeoutMs) {
      if (results.length > 0) return Promise.resolve(results.shift());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          const i = waiters.indexOf(done);
          if (i >= 0) waiters.splice(i, 1);
          reject(new Error(`no RESULT within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (v: unknown) => {
          clearTimeout(t);
          resolve(v);
        };
        waiters.push(done);
      });
    },
    async control(name, query = {}) {
      const q = new URLSearchParams(query).toString();
      const res = await fetch(`http://${addr}/control/${name}${q ? "?" + q : ""}`, { method: "POST" });
      if (!res.ok) throw new Error(`control ${name}: ${res.status} ${await res.text()}`);
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
    },
    log: () => stderr,
  };
}

/** Resolves after ms. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls cond every 10 ms until it holds, failing after timeoutMs. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}
