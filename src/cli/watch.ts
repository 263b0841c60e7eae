import type { Command } from "commander";
import type { Watch } from "../client/watch.js";
import type { LedgerEvent } from "../events/index.js";
import { cell, time } from "./output.js";
import { action, clientOptions, integerArg, type Session } from "./verbs.js";

/**
 * `metaraft watch PREFIX` and `metaraft events tail`: the event ledger as it grows, one line per
 * event, until Ctrl-C (or `--count` events). A table row is `TXID TIME TYPE PATH DETAIL` in
 * fixed-width columns (a stream cannot size them from its rows); under `-w json` each event is
 * one JSON object on its own line (NDJSON), its time in ISO 8601. A watch outlives a node's
 * death: it resumes on another member with no gap and no repeat. A start the ledger has pruned
 * fails with MR_ERR_COMPACTED, naming the first txid it holds.
 */

const TXID_WIDTH = 10;
const TYPE_WIDTH = 22;
const TIME_WIDTH = 24;

/** The path an event is about: `volume`, `volume/bucket` or `volume/bucket/key`. */
function pathOf(e: LedgerEvent): string {
  return [e.volume, e.bucket, e.key].filter((part) => part !== undefined).join("/");
}

function detailOf(e: LedgerEvent): string {
  return [
    ...(e.toKey === undefined ? [] : [`to=${e.toKey}`]),
    ...(e.size === undefined ? [] : [`size=${e.size}`]),
    ...(e.etag === undefined || e.etag === "" ? [] : [`etag=${e.etag}`]),
    ...(e.objectId === undefined ? [] : [`objectId=${e.objectId}`]),
  ].join(" ");
}

export function eventRow(e: LedgerEvent): string {
  return [
    String(e.txid).padEnd(TXID_WIDTH),
    time(e.time).padEnd(TIME_WIDTH),
    e.type.padEnd(TYPE_WIDTH),
    cell(pathOf(e)),
    detailOf(e),
  ]
    .join("  ")
    .trimEnd();
}

export const EVENT_HEADER = [
  "TXID".padEnd(TXID_WIDTH),
  "TIME".padEnd(TIME_WIDTH),
  "TYPE".padEnd(TYPE_WIDTH),
  "PATH",
  "DETAIL",
]
  .join("  ")
  .trimEnd();

export function eventJson(e: LedgerEvent): string {
  return JSON.stringify({ ...e, time: time(e.time) });
}

/** Writes a line, and waits when stdout is full: a slow reader of the pipe holds back the watch, not memory. */
function line(text: string): Promise<void> {
  if (process.stdout.write(`${text}\n`)) return Promise.resolve();
  return new Promise((resolve) => process.stdout.once("drain", () => resolve()));
}

async function follow(session: Session, prefix: string, flags: Record<string, unknown>): Promise<void> {
  const count = flags.count as number | undefined;
  const progress = flags.progress === true;
  let pending: Promise<void> = Promise.resolve();
  const watch: Watch = session.client.watch({
    prefix,
    ...(flags.from === undefined ? {} : { fromTxid: flags.from as number }),
    ...(progress
      ? {
          onProgress: (txid: number) => {
            pending = line(session.json ? JSON.stringify({ progress: txid }) : `(at txid ${txid})`);
          },
        }
      : {}),
  });
  const stop = () => void watch.close();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    // Fails fast, in one line, when no endpoint answers, and before the header is printed.
    await session.call(() => watch.opened());
    if (!session.json) await line(EVENT_HEADER);
    let seen = 0;
    if (count === 0) return;
    for await (const event of watch) {
      await pending;
      await line(session.json ? eventJson(event) : eventRow(event));
      if (count !== undefined && ++seen >= count) break;
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await watch.close();
  }
}

function watchOptions(command: Command): Command {
  return clientOptions(command)
    .option(
      "--from <txid>",
      "start at this txid (1: the ledger's start; default: now)",
      integerArg(0, Number.MAX_SAFE_INTEGER),
    )
    .option("--count <n>", "stop after this many events", integerArg(0, Number.MAX_SAFE_INTEGER))
    .option("--progress", "also print the progress the server reports while nothing matches");
}

export function addWatchVerbs(program: Command): void {
  watchOptions(
    program
      .command("watch")
      .description(
        "print the events under a path as they happen (volume, volume/bucket, volume/bucket/key or any start of one), until Ctrl-C",
      )
      .argument("<prefix>", 'the path prefix ("" for every event)'),
  ).action(
    action(async (session, [prefix], flags) => {
      await follow(session, prefix ?? "", flags);
    }),
  );
  const events = program.command("events").description("the event ledger");
  watchOptions(
    events
      .command("tail")
      .description("print every event as it happens (from --from, else from now), until Ctrl-C"),
  ).action(
    action(async (session, _args, flags) => {
      await follow(session, "", flags);
    }),
  );
}
