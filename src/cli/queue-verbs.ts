import type { Command } from "commander";
import { MetaraftError } from "../errors.js";
import { body, cell, json, table, time } from "./output.js";
import { action, clientOptions, integerArg, out, printReply, type Reply, type Session } from "./verbs.js";

/**
 * `metaraft queue ls|add` and `metaraft queue dlq ls|retry|purge`: the durable queues as the
 * leader sees them (its tails' progress, latency and state), and their dead letters.
 */

/** Requests one `dlq retry` or `dlq purge` without `--limit` sends at most (each moves up to 1,000). */
const DLQ_REQUESTS_MAX = 1000;

const ms = (value: unknown): string => (typeof value === "number" ? value.toFixed(1) : "-");

/** An event as text when it is UTF-8, else as base64. */
function eventView(event: unknown): { text?: string; base64: string } | undefined {
  if (!(event instanceof Uint8Array)) return undefined;
  const bytes = Buffer.from(event.buffer, event.byteOffset, event.byteLength);
  const text = bytes.toString("utf8");
  return Buffer.from(text, "utf8").equals(bytes)
    ? { text, base64: bytes.toString("base64") }
    : { base64: bytes.toString("base64") };
}

function preview(event: { text?: string; base64: string } | undefined, max = 60): string {
  if (!event) return "-";
  const shown = event.text === undefined ? `base64:${event.base64}` : JSON.stringify(event.text);
  return shown.length > max ? `${shown.slice(0, max - 3)}...` : shown;
}

/** `dlq retry` and `dlq purge`: one request with `--limit`, else as many as it takes to empty them. */
async function drain(
  session: Session,
  limit: number | undefined,
  send: () => Promise<Reply>,
  counted: string,
): Promise<{ moved: number; left: number }> {
  let moved = 0;
  let left = 0;
  for (let i = 0; i < (limit === undefined ? DLQ_REQUESTS_MAX : 1); i++) {
    const reply = await session.call(send);
    const n = reply[counted] as number;
    moved += n;
    left = reply.deadLetters as number;
    if (n === 0 || left === 0) break;
  }
  return { moved, left };
}

export function addQueueVerbs(program: Command): void {
  const queue = program
    .command("queue")
    .description("list the durable queues, add to one, and list, retry or purge their dead letters");
  clientOptions(
    queue
      .command("ls")
      .alias("list")
      .description(
        "every queue: outstanding bytes and events, offsets, segments, processing latency, retries, dead letters and state",
      ),
  ).action(
    action(async (session) => {
      const reply = await session.call((c) => c.queueStatus());
      if (session.json) {
        out(json(body(reply)));
        return;
      }
      const rows = (reply.queues as Reply[]).map((q) => [
        cell(q.name),
        cell(q.state),
        cell(q.outstandingBytes),
        cell(q.outstandingEvents),
        cell(q.appended),
        cell(q.processed),
        cell(q.truncated),
        cell(q.segments),
        ms(q.latencyP50Ms),
        ms(q.latencyP99Ms),
        cell(q.retries),
        cell(q.deadLetters),
        cell(q.lastError ?? "-"),
      ]);
      out(
        table(
          [
            "QUEUE",
            "STATE",
            "OUT BYTES",
            "OUT EVENTS",
            "APPENDED",
            "PROCESSED",
            "TRUNCATED",
            "SEGMENTS",
            "P50 MS",
            "P99 MS",
            "RETRIES",
            "DEAD",
            "LAST ERROR",
          ],
          rows,
        ),
      );
      out(`(leader: node ${cell(reply.from)}; offsets in bytes)`);
    }),
  );
  clientOptions(
    queue
      .command("add")
      .description("append events to a queue, in order (each argument one event, as UTF-8)")
      .argument("<queue>")
      .argument("<event...>"),
  ).action(
    action(async (session, args) => {
      // Commander hands a variadic argument over as one array.
      const [name, events] = args as unknown as [string, string[]];
      const reply = await session.call((c) => c.queueAdd(name, events));
      printReply(
        session,
        reply,
        `added ${cell(reply.events)} event(s) to ${name} at offset ${cell(reply.offset)}; ${cell(reply.outstandingBytes)} bytes outstanding`,
      );
    }),
  );

  const dlq = queue.command("dlq").description("a queue's dead letters: the events its handler failed on");
  clientOptions(
    dlq
      .command("ls")
      .alias("list")
      .description("a queue's dead letters, oldest first, with their errors")
      .argument("<queue>")
      .option("--after <offset>", "start after this offset (the next page)", integerArg(0, 2 ** 53 - 1))
      .option("--limit <n>", "at most this many (1 to 1000, default 1000)", integerArg(1, 1000)),
  ).action(
    action(async (session, [name], flags) => {
      const reply = await session.call((c) =>
        c.queueDeadLetters(name!, {
          ...(flags.after === undefined ? {} : { afterOffset: flags.after as number }),
          ...(flags.limit === undefined ? {} : { limit: flags.limit as number }),
        }),
      );
      const letters = (reply.deadLetters as Reply[]).map(
        ({ event, ...letter }): Reply => ({
          ...letter,
          ...(event === undefined ? {} : { event: eventView(event) }),
        }),
      );
      if (session.json) {
        out(json({ ...body(reply), deadLetters: letters }));
        return;
      }
      if (letters.length > 0) {
        out(
          table(
            ["OFFSET", "INDEX", "ATTEMPTS", "BYTES", "DEAD-LETTERED", "EVENT", "ERROR"],
            letters.map((l) => [
              cell(l.offset),
              cell(l.index),
              cell(l.attempts),
              cell(l.bytes),
              time(l.time),
              l.corrupt === undefined ? preview(l.event as ReturnType<typeof eventView>) : "(corrupt)",
              cell(l.corrupt ?? l.error),
            ]),
          ),
        );
      }
      out(
        `${cell(reply.total)} dead letter(s) in ${name}` +
          (reply.truncated === true ? `; more follow: --after ${cell(reply.nextAfterOffset)}` : ""),
      );
    }),
  );
  for (const [verb, done, what] of [
    ["retry", "retried", "append a queue's dead letters to its end again, oldest first"],
    ["purge", "purged", "delete a queue's dead letters"],
  ] as const) {
    clientOptions(
      dlq
        .command(verb)
        .description(what)
        .argument("<queue>")
        .option("--limit <n>", "only this many (1 to 1000; default: all)", integerArg(1, 1000)),
    ).action(
      action(async (session, [name], flags) => {
        const limit = flags.limit as number | undefined;
        const options = limit === undefined ? {} : { limit };
        const { moved, left } = await drain(
          session,
          limit,
          () =>
            verb === "retry"
              ? session.client.queueRetryDeadLetters(name!, options)
              : session.client.queuePurgeDeadLetters(name!, options),
          done,
        );
        if (session.json) {
          out(json({ queue: name, [done]: moved, deadLetters: left }));
          return;
        }
        if (verb === "retry" && moved === 0 && left > 0) {
          throw new MetaraftError("MR_ERR_QUEUE_FULL", `queue ${name}: no dead letter fits in it now`);
        }
        out(`${done} ${moved} dead letter(s) of ${name}; ${left} left`);
      }),
    );
  }
}
