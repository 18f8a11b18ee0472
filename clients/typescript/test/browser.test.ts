// Headless Chromium (Debian's chromium package) loads a page served by the Go
// test server; the page runs test/browser/scenario.ts with the browser's own
// WebSocket and posts its checks to the server, which prints them for this
// test. Without chromium the test is skipped locally; with CI=true it fails.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { startServer } from "./server.js";

function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM, "chromium", "chromium-browser"].filter((x): x is string => !!x);
  for (const c of candidates) {
    const r = spawnSync(c, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return c;
  }
  return undefined;
}

const chromium = findChromium();
const inCI = process.env.CI === "true";
const skip = !chromium && !inCI ? "chromium is not installed (apt-get install chromium); CI=true runs this test" : false;

test("headless Chromium: typed requests, server push, heartbeat, reconnect", { skip, timeout: 120_000 }, async () => {
  assert.ok(chromium, "CI=true but no chromium found: .ci/run installs Debian's chromium package");
  const srv = await startServer();
  const profile = mkdtempSync(join(tmpdir(), "netmsg-chromium-"));
  const page = `${srv.http}/static/test/browser/index.html?relay=${srv.relay}`;
  const browser = spawn(
    chromium,
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0", // keeps the headless browser running until it is killed
      "--enable-logging=stderr",
      "--v=0",
      page,
    ],
    // Its own process group, so that the renderer and helper processes end with it.
    { stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let browserLog = "";
  browser.stderr!.setEncoding("utf8");
  browser.stderr!.on("data", (s: string) => (browserLog += s));
  const exited = new Promise<void>((resolve) => browser.once("exit", () => resolve()));
  try {
    const result = (await Promise.race([
      srv.nextResult(90_000),
      exited.then(() => {
        throw new Error("chromium exited before the page reported");
      }),
    ])) as { userAgent: string; checks: { name: string; ok: boolean; detail: string }[] };
    const lines = result.checks.map((c) => `${c.ok ? "ok  " : "FAIL"} ${c.name}${c.detail ? ": " + c.detail : ""}`);
    console.log(`# ${result.userAgent}\n# ` + lines.join("\n# "));
    assert.ok(result.checks.length >= 15, `only ${result.checks.length} checks ran:\n${lines.join("\n")}`);
    const failed = result.checks.filter((c) => !c.ok);
    assert.deepEqual(failed, [], lines.join("\n"));
  } catch (err) {
    console.log("# chromium console:\n" + browserLog.split("\n").filter((l) => l.includes("CONSOLE")).join("\n"));
    console.log("# testserver log:\n" + srv.log());
    throw err;
  } finally {
    try {
      process.kill(-browser.pid!, "SIGKILL");
    } catch {
      browser.kill("SIGKILL"); // the group is gone already
    }
    await exited;
    await srv.stop();
    // A helper process may still be writing its last files for a moment.
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
});
