// The types the tests use are what cmd/netmsg-ts generates from the Go
// contracts now: a contract change that is not regenerated fails here, and
// the other tests then check the generated shapes against real payloads.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { packageRoot } from "./server.js";

const repoRoot = join(packageRoot, "..", "..");

const generated: [pkg: string, file: string][] = [
  ["./examples/typesafe/contract", "test/gen/contract.ts"],
  ["./clients/typescript/testserver/testcontract", "test/gen/testcontract.ts"],
];

for (const [pkg, file] of generated) {
  test(`${file} is what netmsg-ts generates from ${pkg}`, () => {
    const want = execFileSync("go", ["run", "./cmd/netmsg-ts", "-pkg", pkg], { cwd: repoRoot, encoding: "utf8" });
    const have = readFileSync(join(packageRoot, file), "utf8");
    assert.ok(have === want, `${file} is stale: run go run ./cmd/netmsg-ts -pkg ${pkg} -out clients/typescript/${file}`);
  });
}
