import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { describe, it } from "node:test";
import type { ConfChangeKind } from "../../src/raft/index.js";
import { Harness } from "./harness.js";

/**
 * etcd-style interaction tests: each file under test/raft/scripts is a list of commands, each
 * followed by `----` and the output it must produce. `REWRITE=1 npm test` regenerates the
 * outputs; a reviewer reads the diff.
 */
const scriptsDir = new URL("../../../test/raft/scripts/", import.meta.url);
const rewrite = process.env.REWRITE === "1";

interface Block {
  readonly command: string;
  readonly expected: string;
}

function parse(source: string): { preamble: string; blocks: Block[] } {
  const lines = source.split("\n");
  const blocks: Block[] = [];
  const preamble: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "" || line.startsWith("#")) {
      if (blocks.length === 0) preamble.push(line);
      i++;
      continue;
    }
    const command = line.trim();
    i++;
    if (lines[i] !== "----") throw new Error(`expected ---- after "${command}" at line ${i + 1}`);
    i++;
    const output: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== "") output.push(lines[i++]!);
    blocks.push({ command, expected: output.join("\n") });
  }
  return { preamble: preamble.join("\n").trim(), blocks };
}

function run(h: Harness, command: string): string[] {
  const [verb, ...args] = command.split(/\s+/);
  const num = (k: number) => Number(args[k]);
  const named = (name: string): number[] => {
    const arg = args.find((a) => a.startsWith(`${name}=`));
    return arg
      ? arg
          .slice(name.length + 1)
          .split(",")
          .map(Number)
      : [];
  };
  switch (verb) {
    case "add-nodes": {
      const flag = (name: string): boolean | undefined => {
        const arg = args.find((a) => a.startsWith(`${name}=`));
        return arg === undefined ? undefined : arg.endsWith("=true");
      };
      const options = {
        ...(flag("prevote") === undefined ? {} : { preVote: flag("prevote") }),
        ...(flag("checkquorum") === undefined ? {} : { checkQuorum: flag("checkquorum") }),
        ...(named("max-bytes").length ? { messageBytesMax: named("max-bytes")[0] } : {}),
      };
      h.addNodes(num(0), named("voters"), named("learners"), options);
      return ["ok"];
    }
    case "campaign":
      h.node(num(0)).raft.campaign();
      return ["ok"];
    case "tick-election":
      h.tickElection(num(0));
      return ["ok"];
    case "tick-heartbeat": {
      const times = args[1] ? num(1) : 1;
      for (let t = 0; t < times; t++) h.node(num(0)).raft.tick();
      return ["ok"];
    }
    case "propose":
      return [h.propose(num(0), args.slice(1).join(" "))];
    case "propose-conf-change":
      return [h.proposeConfChange(num(0), args[1] as ConfChangeKind, num(2))];
    case "transfer-leader":
      return [
        h.attempt(() => {
          h.node(num(0)).raft.transferLeader(num(1));
          return "ok";
        }),
      ];
    case "read-index":
      return [
        h.attempt(() => {
          h.node(num(0)).raft.readIndex(new TextEncoder().encode(args[1]));
          return "ok";
        }),
      ];
    case "stabilize":
      return h.stabilize();
    case "process-ready":
      return h.processReady(num(0));
    case "deliver-msgs":
      return h.deliver(args[0] ? num(0) : undefined);
    case "drop-msgs": {
      const node = h.node(num(0));
      const dropped = node.outbox.length;
      node.outbox = [];
      return [`dropped ${dropped}`];
    }
    case "partition":
      for (const other of h.nodes.keys()) {
        if (other === num(0)) continue;
        h.cut.add(`${num(0)}->${other}`);
        h.cut.add(`${other}->${num(0)}`);
      }
      return ["ok"];
    case "cut":
      h.cut.add(`${num(0)}->${num(1)}`);
      return ["ok"];
    case "split": {
      // split 1,2 3,4,5: no messages between the groups, either way.
      const groups = args.map((g) => g.split(",").map(Number));
      for (const a of groups) {
        for (const b of groups) {
          if (a === b) continue;
          for (const x of a) for (const y of b) h.cut.add(`${x}->${y}`);
        }
      }
      return ["ok"];
    }
    case "heal":
      h.cut.clear();
      return ["ok"];
    case "raft-state":
      return h.state();
    case "raft-log":
      return h.log(num(0));
    case "machine":
      return [h.node(num(0)).machine.join(" ") || "(empty)"];
    case "compact": {
      const node = h.node(num(0));
      const index = num(1);
      const data = new TextEncoder().encode(JSON.stringify(node.machine));
      node.storage.createSnapshot(index, node.raft.confState(), data);
      node.storage.compact(index + 1);
      return [`first index ${node.storage.firstIndex()}`];
    }
    case "restart":
      h.restart(num(0));
      return ["ok"];
    default:
      throw new Error(`unknown command ${verb}`);
  }
}

describe("raft interaction scripts", () => {
  const files = readdirSync(scriptsDir)
    .filter((f) => f.endsWith(".txt"))
    .sort();
  assert.ok(files.length > 0, "no scripts found");
  for (const file of files) {
    it(file, () => {
      const url = new URL(file, scriptsDir);
      const { preamble, blocks } = parse(readFileSync(url, "utf8"));
      const h = new Harness({ seed: 1 });
      const out: string[] = preamble ? [preamble, ""] : [];
      for (const block of blocks) {
        const actual = (run(h, block.command).join("\n") || "ok").trimEnd();
        out.push(block.command, "----", actual, "");
        if (!rewrite) assert.equal(actual, block.expected, `${file}: ${block.command}`);
      }
      if (rewrite) writeFileSync(url, out.join("\n"));
    });
  }
});
