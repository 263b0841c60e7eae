import type { Command } from "commander";
import { body, cell, json, table, usage } from "./output.js";
import { action, clientOptions, integerArg, out, type Reply, type Session } from "./verbs.js";

/**
 * `metaraft kv put|get|del|ls|txn`: the coordination keyspace, as etcdctl has it. `txn` reads
 * etcdctl's txn syntax from stdin: compares, a blank line, the success ops, a blank line, the
 * failure ops.
 */

/** Requests one `kv del --prefix` sends at most (each deletes up to kv.deleteKeysMax keys). */
const DELETE_REQUESTS_MAX = 1000;
/** Bytes of a txn read from stdin at most: a request is at most 16 MiB (requestBytesMax's max). */
const TXN_INPUT_BYTES_MAX = 16 * 1024 * 1024;
/** Characters of a value a table shows before cutting it. */
const VALUE_PREVIEW_MAX = 60;

/** A value as text: a string as is, bytes as `base64:…`. */
function valueText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) {
    return `base64:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64")}`;
  }
  return cell(value);
}

function preview(value: unknown): string {
  const text = JSON.stringify(valueText(value));
  return text.length > VALUE_PREVIEW_MAX ? `${text.slice(0, VALUE_PREVIEW_MAX - 3)}...` : text;
}

/** An entry for JSON output: bytes as base64. */
function entryView(entry: unknown): unknown {
  if (typeof entry !== "object" || entry === null) return entry;
  const e = entry as Reply;
  return { ...e, value: valueText(e.value) };
}

/** etcdctl prints a got entry as its key, then its value, one line each. */
function entryLines(entry: unknown): string {
  const e = entry as Reply;
  return `${e.key as string}\n${valueText(e.value)}`;
}

// ---- the txn syntax ----

export interface ParsedTxn {
  readonly compare: readonly Reply[];
  readonly success: readonly Reply[];
  readonly failure: readonly Reply[];
}

const STRING = String.raw`"(?:[^"\\]|\\.)*"`;
const COMPARE_LINE = new RegExp(
  String.raw`^(value|version|create|mod|exists)\(\s*(${STRING})\s*\)\s*(=|!=|<|>)\s*(.+?)$`,
);
const TOKEN = new RegExp(String.raw`${STRING}|\S+`, "g");

function jsonString(literal: string, line: number): string {
  try {
    return JSON.parse(literal) as string;
  } catch {
    throw usage(`txn line ${line}: ${literal} is not a string literal`);
  }
}

function parseCompare(text: string, line: number): Reply {
  const match = COMPARE_LINE.exec(text);
  if (!match) {
    throw usage(
      `txn line ${line}: a compare is target("key") op operand, e.g. value("k") = "v", version("k") > 0, create("k") = 0, mod("k") < 100, exists("k") = true`,
    );
  }
  const [, target, keyLiteral, op, operand] = match as unknown as [string, string, string, string, string];
  const key = jsonString(keyLiteral, line);
  if (target === "value") {
    if (!new RegExp(`^${STRING}$`).test(operand)) throw usage(`txn line ${line}: a value is a "string"`);
    return { target, key, op, value: jsonString(operand, line) };
  }
  if (target === "exists") {
    if (operand !== "true" && operand !== "false")
      throw usage(`txn line ${line}: exists takes true or false`);
    return { target, key, op, value: operand === "true" };
  }
  if (!/^\d+$/.test(operand) || !Number.isSafeInteger(Number(operand))) {
    throw usage(`txn line ${line}: ${target} takes a non-negative integer`);
  }
  return { target, key, op, value: Number(operand) };
}

function parseOp(text: string, line: number): Reply {
  const tokens = (text.match(TOKEN) ?? []).map((t) => (t.startsWith('"') ? jsonString(t, line) : t));
  const [verb, key, value, ...rest] = tokens;
  const wrong = () =>
    usage(`txn line ${line}: an op is put KEY VALUE, del KEY or get KEY (quote with "...")`);
  if (key === undefined || rest.length > 0) throw wrong();
  if (verb === "put" && value !== undefined) return { op: "put", key, value };
  if ((verb === "del" || verb === "get") && value === undefined) {
    return { op: verb === "del" ? "delete" : "get", key };
  }
  throw wrong();
}

/**
 * etcdctl's txn input: compare lines, a blank line, success op lines, a blank line, failure op
 * lines. Keys and values with blanks or quotes are JSON string literals ("a b").
 */
export function parseTxn(input: string): ParsedTxn {
  // As etcdctl: each blank line ends a section, so a txn of no compares starts with one.
  const sections: { text: string; line: number }[][] = [[], [], []];
  let section = 0;
  input.split(/\r?\n/).forEach((raw, i) => {
    const text = raw.trim();
    if (text === "") {
      section++;
      return;
    }
    if (section > 2) throw usage(`txn line ${i + 1}: text after the failure ops`);
    sections[section]!.push({ text, line: i + 1 });
  });
  const [compares, success, failure] = sections as [
    (typeof sections)[0],
    (typeof sections)[0],
    (typeof sections)[0],
  ];
  return {
    compare: compares.map((l) => parseCompare(l.text, l.line)),
    success: success.map((l) => parseOp(l.text, l.line)),
    failure: failure.map((l) => parseOp(l.text, l.line)),
  };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of process.stdin) {
    bytes += (chunk as Buffer).length;
    if (bytes > TXN_INPUT_BYTES_MAX) throw usage(`the txn on stdin is over ${TXN_INPUT_BYTES_MAX} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function txnResponseLines(response: Reply): string {
  switch (response.op) {
    case "put":
      return "OK";
    case "delete":
      return String(response.deleted);
    default:
      return response.kv ? entryLines(response.kv) : "";
  }
}

// ---- the verbs ----

function staleOption(command: Command): Command {
  return command.option(
    "--stale",
    "read any node's applied state, without a leader round trip (may be behind)",
  );
}

const staleOf = (flags: Record<string, unknown>) => (flags.stale === true ? { stale: true } : {});

export function addKvVerbs(program: Command): void {
  const kv = program
    .command("kv")
    .description("the coordination keyspace: put, get, delete and list keys, and run txns (as etcdctl)");

  clientOptions(
    kv
      .command("put")
      .description("put a key's value (as UTF-8)")
      .argument("<key>")
      .argument("<value>")
      .option("--prev-kv", "print the entry the put replaced"),
  ).action(
    action(async (session, [key, value], flags) => {
      const reply = await session.call((c) => c.kvPut(key!, value!, { prevKv: flags.prevKv === true }));
      if (session.json) {
        out(
          json({
            ...body(reply),
            ...(reply.prevKv === undefined ? {} : { prevKv: entryView(reply.prevKv) }),
          }),
        );
        return;
      }
      out(`OK (txid ${cell(reply.txid)})`);
      if (reply.prevKv) out(entryLines(reply.prevKv));
    }),
  );

  clientOptions(
    staleOption(
      kv
        .command("get")
        .description("a key's value (nothing when there is no such key), or with --verbose its entry")
        .argument("<key>")
        .option("--verbose", "also its version and create and modify txids"),
    ),
  ).action(
    action(async (session, [key], flags) => {
      const reply = await session.call((c) => c.kvGet(key!, staleOf(flags)));
      const entry = reply.kv as Reply | null;
      if (session.json) {
        out(json({ kv: entryView(entry), appliedTxid: reply.appliedTxid }));
        return;
      }
      if (!entry) return;
      if (flags.verbose === true) {
        out(
          table(
            ["KEY", "VERSION", "CREATE TXID", "MOD TXID", "VALUE"],
            [
              [
                cell(entry.key),
                cell(entry.version),
                cell(entry.createTxid),
                cell(entry.modTxid),
                preview(entry.value),
              ],
            ],
          ),
        );
        return;
      }
      out(entryLines(entry));
    }),
  );

  clientOptions(
    kv
      .command("del")
      .alias("delete")
      .description("delete a key, or with --prefix every key under it")
      .argument("<key>")
      .option("--prefix", "delete every key starting with <key> (as many requests as it takes)")
      .option("--prev-kv", "print the deleted entries"),
  ).action(
    action(async (session, [key], flags) => {
      const prefix = flags.prefix === true;
      const prevKv = flags.prevKv === true;
      let deleted = 0;
      const prevKvs: unknown[] = [];
      for (let i = 0; i < DELETE_REQUESTS_MAX; i++) {
        const reply = await session.call((c) => c.kvDelete(key!, { prefix, prevKv }));
        deleted += reply.deleted as number;
        if (prevKv) prevKvs.push(...(reply.prevKvs as unknown[]));
        if (reply.truncated !== true) break;
      }
      if (session.json) {
        out(json({ deleted, ...(prevKv ? { prevKvs: prevKvs.map(entryView) } : {}) }));
        return;
      }
      out(String(deleted));
      for (const entry of prevKvs) out(entryLines(entry));
    }),
  );

  clientOptions(
    staleOption(
      kv
        .command("ls")
        .alias("list")
        .description("the keys under a prefix, in key order, with their versions, txids and values")
        .argument("[prefix]", "only keys starting with this", "")
        .option("--start-after <key>", "start after this key (the next page)")
        .option("--limit <n>", "at most this many per page (1 to 1000, default 1000)", integerArg(1, 1000))
        .option("--all", "follow every page, not just the first"),
    ),
  ).action(
    action(async (session, [prefix], flags) => {
      const items: Reply[] = [];
      let startAfter = flags.startAfter as string | undefined;
      let truncated = false;
      let next: string | undefined;
      for (;;) {
        const reply = await session.call((c) =>
          c.kvRange(prefix ?? "", {
            ...(startAfter === undefined ? {} : { startAfter }),
            ...(flags.limit === undefined ? {} : { limit: flags.limit as number }),
            ...staleOf(flags),
          }),
        );
        items.push(...(reply.items as Reply[]));
        truncated = reply.truncated === true;
        next = reply.nextStartAfter as string | undefined;
        if (!truncated || flags.all !== true || next === undefined) break;
        startAfter = next;
      }
      printRange(session, items, truncated, next);
    }),
  );

  clientOptions(
    kv
      .command("txn")
      .description(
        'run a txn read from stdin as etcdctl does: compares (value("k") = "v", version("k") > 0, create("k") = 0, mod("k") < 100, exists("k") = true), a blank line, success ops (put k v, del k, get k), a blank line, failure ops',
      ),
  ).action(
    action(async (session) => {
      const txn = parseTxn(await readStdin());
      const reply = await session.call((c) => c.kvTxn(txn));
      const responses = reply.responses as Reply[];
      if (session.json) {
        out(
          json({
            txid: reply.txid,
            succeeded: reply.succeeded,
            responses: responses.map((r) => ({
              ...r,
              ...(r.kv === undefined ? {} : { kv: entryView(r.kv) }),
              ...(r.prevKv === undefined ? {} : { prevKv: entryView(r.prevKv) }),
            })),
          }),
        );
        return;
      }
      // As etcdctl: the outcome, then each op's response after a blank line.
      const status = reply.succeeded ? "SUCCESS" : "FAILURE";
      out([status, ...responses.flatMap((r) => ["", txnResponseLines(r)])].join("\n"));
    }),
  );
}

function printRange(session: Session, items: Reply[], truncated: boolean, next: string | undefined): void {
  if (session.json) {
    out(
      json({
        items: items.map(entryView),
        truncated,
        ...(next === undefined ? {} : { nextStartAfter: next }),
      }),
    );
    return;
  }
  if (items.length > 0) {
    out(
      table(
        ["KEY", "VERSION", "CREATE TXID", "MOD TXID", "VALUE"],
        items.map((e) => [
          cell(e.key),
          cell(e.version),
          cell(e.createTxid),
          cell(e.modTxid),
          preview(e.value),
        ]),
      ),
    );
  }
  if (truncated) {
    process.stderr.write(`(more keys follow: --start-after ${JSON.stringify(next ?? "")}, or --all)\n`);
  }
}
