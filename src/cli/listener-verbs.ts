import { resolve } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { LISTENER_RUNNERS } from "../events/index.js";
import { systemRuntime } from "../runtime.js";
import { body, cell, json, table } from "./output.js";
import { action, clientOptions, out, printReply, type Reply } from "./verbs.js";

/**
 * `metaraft listeners ls|add|remove|start|stop|restart|run` and `metaraft metrics`. The
 * registry is replicated, so each change reaches whichever host runs the listener (the leader's
 * worker threads, or the runner beside it) within a fraction of a second, with no restart.
 */
export function addListenerVerbs(program: Command): void {
  const listeners = program
    .command("listeners")
    .description(
      "list, add, remove, start, stop and restart the event listener plugins; run the separate runner",
    );
  clientOptions(
    listeners
      .command("ls")
      .alias("list")
      .description(
        "every listener: where it runs, its state, checkpoint, lag in txids and ms, errors and restarts",
      ),
  ).action(
    action(async (session) => {
      const reply = await session.call((c) => c.listenerStatus());
      if (session.json) {
        out(json(body(reply)));
        return;
      }
      const rows = (reply.listeners as Reply[]).map((l) => [
        cell(l.name),
        cell(l.runner),
        cell(l.state),
        cell(l.checkpoint),
        cell(l.lagTxids),
        cell(l.lagMs),
        cell(l.errors),
        cell(l.restarts),
        cell(l.module),
        cell(l.lastError ?? "-"),
      ]);
      out(
        table(
          [
            "NAME",
            "RUNNER",
            "STATE",
            "CHECKPOINT",
            "LAG",
            "LAG MS",
            "ERRORS",
            "RESTARTS",
            "MODULE",
            "LAST ERROR",
          ],
          rows,
        ),
      );
      const ledger = reply.ledger as Reply;
      out(
        `ledger: txids ${cell(ledger.firstTxid)}..${cell(ledger.lastTxid)}, ${cell(ledger.count)} events (leader: node ${cell(reply.from)})`,
      );
    }),
  );
  clientOptions(
    listeners
      .command("add")
      .description("register a listener plugin; the leader (or the runner beside it) starts it at once")
      .argument("<name>", "the listener's name: letters, digits, ., _ and -")
      .requiredOption(
        "--module <module>",
        "a plugin's path (absolute, or relative to the node's directory), a package, or a shipped sink: ndjson, webhook",
      )
      .option("--options <json>", "the plugin's options, as a JSON object", jsonObject, {})
      .addOption(new Option("--runner <runner>", "where it runs").choices(LISTENER_RUNNERS).default("node"))
      .option("--from <from>", "deliver from: now, start (every event held) or after a txid", fromArg, "now")
      .option("--disabled", "register it stopped"),
  ).action(
    action(async (session, [name], flags) => {
      const reply = await session.call((c) =>
        c.listenerAdd({
          name: name!,
          module: moduleArg(flags.module as string),
          options: flags.options as Record<string, unknown>,
          runner: flags.runner as "node" | "process",
          from: flags.from as "now" | "start" | number,
          enabled: flags.disabled !== true,
        }),
      );
      printReply(session, reply, `added listener ${name}`);
    }),
  );
  clientOptions(
    listeners
      .command("remove")
      .alias("rm")
      .description("unregister a listener (its host stops it)")
      .argument("<name>"),
  ).action(
    action(async (session, [name]) => {
      const reply = await session.call((c) => c.listenerRemove(name!));
      printReply(session, reply, `removed listener ${name}`);
    }),
  );
  for (const [verb, change, done, what] of [
    ["start", { enabled: true }, "started", "start a stopped listener from its checkpoint"],
    [
      "stop",
      { enabled: false },
      "stopped",
      "stop a listener (it keeps its checkpoint, and the ledger keeps what it has not seen)",
    ],
    [
      "restart",
      { restart: true },
      "restarted",
      "restart a listener's plugin (a fresh thread, from its checkpoint)",
    ],
  ] as const) {
    clientOptions(listeners.command(verb).description(what).argument("<name>")).action(
      action(async (session, [name]) => {
        const reply = await session.call((c) => c.listenerUpdate(name!, change));
        printReply(session, reply, `${done} listener ${name}`);
      }),
    );
  }
  listeners
    .command("run")
    .description(
      "run the node's `process` listeners beside it (reads its data read-only; idle unless the node leads)",
    )
    .requiredOption("--data <dir>", "the node's data directory")
    .option("--base-dir <dir>", "relative plugin paths resolve against it (default: the working directory)")
    .option("--log-level <level>", "trace, debug, info, warn or error", "info")
    .action(async (flags: { data: string; baseDir?: string; logLevel: string }) => {
      const { ListenerRunner } = await import("../server/listener-runner.js");
      const logger = pino({ level: flags.logLevel, base: { runner: flags.data } }, pino.destination(2));
      const runner = await ListenerRunner.start({
        dataDir: flags.data,
        runtime: systemRuntime,
        logger,
        ...(flags.baseDir ? { baseDir: flags.baseDir } : {}),
      });
      process.stdout.write(
        `listener runner ready: node ${runner.node.id} at ${runner.node.client}, data ${flags.data}\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = (): void => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await runner.close();
      logger.flush();
      process.exit(0);
    });
  clientOptions(
    program
      .command("metrics")
      .description("the node's metrics and its listener plugins', as Prometheus text"),
  ).action(
    action(async (session) => {
      const reply = await session.call((c) => c.metrics());
      out(session.json ? json(body(reply)) : String(reply.text).trimEnd());
    }),
  );
}

/** A relative path means one from where the operator runs the command, not the node's directory. */
function moduleArg(module: string): string {
  return module.startsWith("./") || module.startsWith("../") ? resolve(module) : module;
}

function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError("must be JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new InvalidArgumentError("must be a JSON object");
  return parsed as Record<string, unknown>;
}

function fromArg(value: string): "now" | "start" | number {
  if (value === "now" || value === "start") return value;
  if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) return Number(value);
  throw new InvalidArgumentError("must be now, start or a txid");
}
