import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { SRC, sourceFiles } from "./helpers/sources.js";

/**
 * The module map of DESIGN.md, bottom first: a module may import its own files and any module
 * listed before it, never one after it. `errors.ts` sits below everything.
 */
const LAYERS = [
  "errors.ts",
  // The clock, timers and random source, passed in: below everything that keeps time.
  "runtime.ts",
  "core",
  "raft",
  "storage",
  "transport",
  // Every operator setting, declared once: the host, the write path and the node take their defaults from it.
  "settings.ts",
  "host",
  // Below the write path, unlike DESIGN.md's list: requests return events and apply stores them
  // in the same transaction, so execution needs the ledger's types and codec.
  "events",
  "execution",
  "namespace",
  "coordination",
  "services",
  "queues",
  // The client protocol (ops, typed replies, pushed frames), shared by the server and the
  // client: above the namespace and the ledger, whose records its replies carry.
  "protocol",
  // Below the server, unlike DESIGN.md's list: a joining node asks a member through the client,
  // which needs only the transport's framing.
  "client",
  "server",
  "cli",
] as const;

const src = SRC;

const moduleOf = (file: string): string => relative(src, file).split("/")[0]!;

describe("the module map", () => {
  it("every src/ module is on the map, and imports only itself and the modules below it", () => {
    const violations: string[] = [];
    const sources = sourceFiles(src);
    assert.ok(sources.length > 50, `found ${sources.length} sources under ${src}`);
    for (const file of sources) {
      const from = moduleOf(file);
      const rank = LAYERS.indexOf(from as (typeof LAYERS)[number]);
      assert.ok(rank >= 0, `${relative(src, file)}: module ${from} is not on the map`);
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
        const target = moduleOf(resolve(dirname(file), match[1]!)).replace(/\.js$/, ".ts");
        if (target === from) continue;
        const targetRank = LAYERS.indexOf(target as (typeof LAYERS)[number]);
        if (targetRank < 0 || targetRank > rank)
          violations.push(`${relative(src, file)} imports ${match[1]}`);
      }
    }
    assert.deepEqual(violations, []);
  });
});
