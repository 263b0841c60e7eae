import { type Command, InvalidArgumentError } from "commander";
import type { LifecycleConfig, LifecycleRule } from "../services/index.js";
import { body, cell, json, table, time } from "./output.js";
import { action, clientOptions, out, printReply, type Reply } from "./verbs.js";

/**
 * `metaraft service ls|get|set|start|stop` and `metaraft lifecycle set|get|rm BUCKET`. A
 * service's configuration and `shouldRun` are replicated: the leader that runs it picks a
 * change up within a fraction of a second, and the next leader resumes it where it stood.
 */
export function addServiceVerbs(program: Command): void {
  const service = program
    .command("service")
    .description("list services, read and set their configuration, start and stop them");
  clientOptions(
    service
      .command("ls")
      .alias("list")
      .description(
        "every service: its state, the node it runs on, whether it should run, its progress and last error",
      ),
  ).action(
    action(async (session) => {
      const reply = await session.call((c) => c.serviceList());
      if (session.json) {
        out(json(body(reply)));
        return;
      }
      const rows = (reply.services as Reply[]).map((s) => [
        cell(s.name),
        cell(s.state),
        s.node === undefined ? "-" : cell(s.node),
        s.shouldRun ? "yes" : "no",
        time(s.since),
        s.progress === undefined || s.progress === null ? "-" : JSON.stringify(s.progress),
        cell(s.lastError ?? "-"),
      ]);
      out(table(["NAME", "STATE", "NODE", "SHOULD RUN", "SINCE", "PROGRESS", "LAST ERROR"], rows));
    }),
  );
  clientOptions(
    service
      .command("get")
      .description("a service's replicated configuration and progress")
      .argument("<name>"),
  ).action(
    action(async (session, [name]) => {
      const reply = await session.call((c) => c.serviceGet(name!));
      out(json(body(reply)));
    }),
  );
  clientOptions(
    service
      .command("set")
      .description("replace a service's configuration (checked by the service before it commits)")
      .argument("<name>")
      .requiredOption("--config <json>", "the configuration, as JSON", jsonValue),
  ).action(
    action(async (session, [name], flags) => {
      const reply = await session.call((c) => c.serviceSet(name!, { config: flags.config }));
      printReply(session, reply, `set the configuration of ${name}`);
    }),
  );
  for (const [verb, shouldRun] of [
    ["start", true],
    ["stop", false],
  ] as const) {
    clientOptions(
      service
        .command(verb)
        .description(
          `${verb} a service (replicated: it stays ${verb === "start" ? "started" : "stopped"} across failovers)`,
        )
        .argument("<name>"),
    ).action(
      action(async (session, [name]) => {
        const reply = await session.call((c) => c.serviceSet(name!, { shouldRun }));
        printReply(session, reply, `${verb === "start" ? "started" : "stopped"} ${name}`);
      }),
    );
  }

  const lifecycle = program
    .command("lifecycle")
    .description("expire keys by prefix and age, per bucket (the lifecycle service's rules)");
  const current = async (c: { serviceGet(name: string): Promise<Reply> }): Promise<LifecycleConfig> => {
    const record = (await c.serviceGet("lifecycle")).service as { config?: LifecycleConfig | null } | null;
    return record?.config ?? { buckets: {} };
  };
  clientOptions(
    lifecycle
      .command("set")
      .description("add a rule to a bucket, or change the age of its rule with that prefix")
      .argument("<bucket>", "volume/bucket")
      .option("--prefix <prefix>", "keys starting with it (default: every key)", "")
      .requiredOption(
        "--expire-after <age>",
        "how long after its last commit a key expires: 90d, 12h, 30m, 45s or 500ms",
        ageArg,
      ),
  ).action(
    action(async (session, [bucket], flags) => {
      const reply = await session.call(async (c) => {
        const config = await current(c);
        const rules = (config.buckets[bucket!] ?? []).filter((r) => r.prefix !== flags.prefix);
        const rule: LifecycleRule = {
          prefix: flags.prefix as string,
          expireAfterMs: flags.expireAfter as number,
        };
        return c.serviceSet("lifecycle", {
          config: { buckets: { ...config.buckets, [bucket!]: [...rules, rule] } },
        });
      });
      printReply(
        session,
        reply,
        `set the lifecycle rule of ${bucket} for prefix ${JSON.stringify(flags.prefix)}`,
      );
    }),
  );
  clientOptions(
    lifecycle
      .command("get")
      .description("a bucket's rules (every bucket's without one)")
      .argument("[bucket]", "volume/bucket"),
  ).action(
    action(async (session, [bucket]) => {
      const config = await session.call((c) => current(c));
      const buckets = bucket ? { [bucket]: config.buckets[bucket] ?? [] } : config.buckets;
      if (session.json) {
        out(json({ buckets }));
        return;
      }
      const rows = Object.entries(buckets).flatMap(([b, rules]) =>
        rules.map((r) => [b, JSON.stringify(r.prefix), `${r.expireAfterMs} ms`]),
      );
      out(table(["BUCKET", "PREFIX", "EXPIRE AFTER"], rows));
    }),
  );
  clientOptions(
    lifecycle
      .command("rm")
      .description("remove a bucket's rules, or only its rule with --prefix")
      .argument("<bucket>", "volume/bucket")
      .option("--prefix <prefix>", "only the rule with this prefix"),
  ).action(
    action(async (session, [bucket], flags) => {
      const reply = await session.call(async (c) => {
        const config = await current(c);
        const buckets = { ...config.buckets };
        const kept =
          flags.prefix === undefined ? [] : (buckets[bucket!] ?? []).filter((r) => r.prefix !== flags.prefix);
        if (kept.length > 0) buckets[bucket!] = kept;
        else delete buckets[bucket!];
        return c.serviceSet("lifecycle", { config: { buckets } });
      });
      printReply(
        session,
        reply,
        `removed the lifecycle rules of ${bucket}${flags.prefix === undefined ? "" : ` for prefix ${JSON.stringify(flags.prefix)}`}`,
      );
    }),
  );
}

function jsonValue(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw new InvalidArgumentError("must be JSON");
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function ageArg(value: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  const ms = match ? Number(match[1]) * UNITS[match[2]!]! : Number.NaN;
  if (!Number.isSafeInteger(ms))
    throw new InvalidArgumentError("must be a number and a unit: 90d, 12h, 30m, 45s or 500ms");
  return ms;
}
