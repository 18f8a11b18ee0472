// Proves the type test bites: with its @ts-expect-error directives blanked
// out, tsc must report an error on exactly the line under each of them, and
// on no other line.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { packageRoot } from "./server.js";

test("each @ts-expect-error line of the type test fails to compile on its own", () => {
  const src = readFileSync(join(packageRoot, "test", "typecheck.ts"), "utf8").split("\n");
  const expected: number[] = [];
  const stripped = src.map((line, i) => {
    if (!line.trim().startsWith("// @ts-expect-error")) return line;
    expected.push(i + 2); // the line under the directive, 1-based
    return "//";
  });
  assert.ok(expected.length >= 10, `only ${expected.length} directives`);

  const dir = join(packageRoot, "build", "typecheck-stripped");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "test"), { recursive: true });
  cpSync(join(packageRoot, "test", "gen"), join(dir, "test", "gen"), { recursive: true });
  writeFileSync(join(dir, "test", "typecheck.ts"), stripped.join("\n"));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({ extends: "../../tsconfig.json", compilerOptions: { noEmit: true, rootDir: "." }, include: ["test"] }),
  );
  const tsc = join(packageRoot, "node_modules", "typescript", "bin", "tsc");
  const r = spawnSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json"), "--pretty", "false"], { encoding: "utf8" });
  const errorLines = new Set<number>();
  for (const m of r.stdout.matchAll(/test[/\\]typecheck\.ts\((\d+),\d+\): error/g)) errorLines.add(Number(m[1]));
  assert.notEqual(r.status, 0, "tsc accepted the contract violations:\n" + r.stdout);
  assert.deepEqual([...errorLines].sort((a, b) => a - b), expected, r.stdout);
  rmSync(dir, { recursive: true, force: true });
});
