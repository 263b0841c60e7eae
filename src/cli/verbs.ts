import { type Command, InvalidArgumentError } from "commander";
import { MetaraftClient } from "../client/client.js";
import type { Endpoint } from "../client/rpc-client.js";
import { MetaraftError } from "../errors.js";
import { addAgentVerbs } from "./agent-verbs.js";
import {
  CLUSTER_ID_ENV,
  DEFAULT_CLUSTER_ID,
  DEFAULT_ENDPOINTS,
  ENDPOINTS_ENV,
  probe,
  reaching,
  resolveClusterId,
  resolveEndpoints,
  showEndpoint,
  unavailable,
} from "./endpoints.js";
import { addKvVerbs } from "./kv-verbs.js";
import { addListenerVerbs } from "./listener-verbs.js";
import { addLockVerbs } from "./lock-verbs.js";
import { body, cell, fields, json, table, time } from "./output.js";
import { addQueueVerbs } from "./queue-verbs.js";
import { addServiceVerbs } from "./service-verbs.js";

/**
 * The client verbs: `volume`, `bucket`, `key` and `status`. Every verb takes the connection
 * options (`--endpoints`, `--cluster-id`, `--timeout-ms`) and the root's `-w/--output`
 * (`--json`); volume, bucket and key are separate arguments (keys may hold `/`).
 */

export const DEFAULT_TIMEOUT_MS = 10_000;

export interface ClientFlags {
  readonly endpoints?: string;
  readonly clusterId?: string;
  readonly timeoutMs?: number;
  readonly output?: string;
}

export interface Session {
  readonly client: MetaraftClient;
  readonly endpoints: readonly Endpoint[];
  readonly clusterId: string;
  readonly timeoutMs: number;
  readonly json: boolean;
  /** Runs a call, failing fast in one line when no endpoint can be reached. */
  call<T>(fn: (client: MetaraftClient) => Promise<T>): Promise<T>;
}

export type Reply = Record<string, unknown>;

export function out(text: string): void {
  if (text.length > 0) process.stdout.write(`${text}\n`);
}

function note(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function integerArg(min: number, max: number) {
  return (value: string): number => {
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function metaArg(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const at = value.indexOf("=");
  if (at <= 0) throw new InvalidArgumentError("must be name=value");
  const name = value.slice(0, at);
  return { ...previous, [name]: value.slice(at + 1) };
}

export function clientOptions(command: Command): Command {
  return command
    .option(
      "--endpoints <list>",
      `nodes' client endpoints, host:port joined by commas (default: $${ENDPOINTS_ENV}, else ${DEFAULT_ENDPOINTS})`,
    )
    .option(
      "--cluster-id <name>",
      `the cluster's id (default: $${CLUSTER_ID_ENV}, else ${DEFAULT_CLUSTER_ID})`,
    )
    .option(
      "--timeout-ms <ms>",
      `deadline of each call (default: ${DEFAULT_TIMEOUT_MS})`,
      integerArg(1, 24 * 60 * 60 * 1000),
    );
}

function readOptions(command: Command): Command {
  return command.option(
    "--stale",
    "read any node's applied state, without a leader round trip (may be behind)",
  );
}

function listOptions(command: Command, what: string): Command {
  return readOptions(command)
    .option("--prefix <prefix>", `only ${what} whose name starts with this`)
    .option("--start-after <name>", `start after this name (the next page)`)
    .option("--limit <n>", "at most this many per page (1 to 1000, default 1000)", integerArg(1, 1000))
    .option("--all", "follow every page, not just the first");
}

/**
 * Where `action` gets a command's client when not from a new one of its own: the shell keeps
 * its clients for the whole session and gives its own connection flags as the defaults.
 */
export interface ClientSource {
  /** The connection flags a command line leaves out. */
  readonly defaults: ClientFlags;
  /** A client for these settings; `action` does not close it. */
  client(settings: { endpoints: readonly Endpoint[]; clusterId: string; timeoutMs: number }): MetaraftClient;
}

const clientSources = new WeakMap<Command, ClientSource>();

/** Every verb under `root` takes its client from `source` (see ClientSource). */
export function useClientSource(root: Command, source: ClientSource): void {
  clientSources.set(root, source);
}

function rootOf(command: Command): Command {
  let root = command;
  while (root.parent) root = root.parent;
  return root;
}

/** Wraps an action: a session from the connection flags, closed whatever happens. */
export function action(
  run: (session: Session, args: string[], flags: Record<string, unknown>) => Promise<void>,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const command = args.at(-1) as Command;
    const source = clientSources.get(rootOf(command));
    const flags = command.optsWithGlobals() as Record<string, unknown> & ClientFlags;
    const positional = args.slice(0, -2) as string[];
    const endpoints = resolveEndpoints(flags.endpoints ?? source?.defaults.endpoints);
    const timeoutMs = flags.timeoutMs ?? source?.defaults.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const clusterId = resolveClusterId(flags.clusterId ?? source?.defaults.clusterId);
    const client = source
      ? source.client({ endpoints, clusterId, timeoutMs })
      : new MetaraftClient({ endpoints, clusterId, timeoutMs });
    const session: Session = {
      client,
      endpoints,
      clusterId,
      timeoutMs,
      json: flags.output === "json",
      call: (fn) => reaching(endpoints, timeoutMs, () => fn(client)),
    };
    try {
      await run(session, positional, flags);
    } finally {
      if (!source) client.close();
    }
  };
}

function readFlags(flags: Record<string, unknown>): { stale?: boolean } {
  return flags.stale === true ? { stale: true } : {};
}

async function listAll(
  session: Session,
  flags: Record<string, unknown>,
  page: (options: {
    prefix?: string;
    startAfter?: string;
    limit?: number;
    stale?: boolean;
  }) => Promise<{ items: Reply[]; truncated: boolean; nextStartAfter?: string }>,
): Promise<{ items: Reply[]; truncated: boolean; nextStartAfter?: string }> {
  const items: Reply[] = [];
  let startAfter = flags.startAfter as string | undefined;
  for (;;) {
    const reply = await session.call(() =>
      page({
        ...(flags.prefix === undefined ? {} : { prefix: flags.prefix as string }),
        ...(startAfter === undefined ? {} : { startAfter }),
        ...(flags.limit === undefined ? {} : { limit: flags.limit as number }),
        ...readFlags(flags),
      }),
    );
    items.push(...reply.items);
    const next = reply.nextStartAfter;
    if (!reply.truncated || flags.all !== true || next === undefined) {
      return { items, truncated: reply.truncated, ...(next === undefined ? {} : { nextStartAfter: next }) };
    }
    startAfter = next;
  }
}

function printList(
  session: Session,
  what: string,
  result: { items: Reply[]; truncated: boolean; nextStartAfter?: string },
  header: string[],
  row: (item: Reply) => string[],
): void {
  if (session.json) {
    out(json(result));
    return;
  }
  if (result.items.length > 0) out(table(header, result.items.map(row)));
  if (result.truncated) {
    const next = result.nextStartAfter ?? "";
    note(`(more ${what} follow: --start-after ${JSON.stringify(next)}, or --all)`);
  }
}

export function printReply(session: Session, reply: Reply, human: string): void {
  out(session.json ? json(body(reply)) : human);
}

function recordOf(reply: Reply, field: string): Reply {
  const value = reply[field];
  if (typeof value !== "object" || value === null) {
    throw new MetaraftError("MR_ERR_INTERNAL", `the reply has no ${field}`);
  }
  return value as Reply;
}

export function addVerbs(program: Command): void {
  addMemberVerbs(program);
  addListenerVerbs(program);
  addServiceVerbs(program);
  addQueueVerbs(program);
  addKvVerbs(program);
  addAgentVerbs(program);
  addLockVerbs(program);
  // ---- volume ----
  const volume = program.command("volume").description("create, remove, list and inspect volumes");
  clientOptions(
    volume
      .command("create")
      .description("create a volume")
      .argument("<volume>")
      .option("--owner <owner>", "the volume's owner")
      .option(
        "--quota-bytes <n>",
        "the volume's quota in bytes (stored, not yet enforced)",
        integerArg(0, 2 ** 53 - 1),
      ),
  ).action(
    action(async (session, [name], flags) => {
      const reply = await session.call((c) =>
        c.createVolume(name!, {
          ...(flags.owner === undefined ? {} : { owner: flags.owner as string }),
          ...(flags.quotaBytes === undefined ? {} : { quotaBytes: flags.quotaBytes as number }),
        }),
      );
      printReply(session, reply, `created volume ${name}`);
    }),
  );
  clientOptions(
    volume.command("rm").alias("delete").description("remove an empty volume").argument("<volume>"),
  ).action(
    action(async (session, [name]) => {
      const reply = await session.call((c) => c.deleteVolume(name!));
      printReply(session, reply, `removed volume ${name}`);
    }),
  );
  clientOptions(
    listOptions(volume.command("ls").alias("list").description("list volumes"), "volumes"),
  ).action(
    action(async (session, _args, flags) => {
      const result = await listAll(session, flags, (o) => session.client.listVolumes(o));
      printList(session, "volumes", result, ["VOLUME", "OWNER", "QUOTA", "CREATED"], (v) => [
        cell(v.name),
        cell(v.owner),
        v.quotaBytes === -1 ? "unlimited" : cell(v.quotaBytes),
        time(v.createdAt),
      ]);
    }),
  );
  clientOptions(readOptions(volume.command("info").description("show a volume").argument("<volume>"))).action(
    action(async (session, [name], flags) => {
      const reply = await session.call((c) => c.read("infoVolume", { volume: name }, readFlags(flags)));
      const v = recordOf(reply, "volume");
      printReply(
        session,
        reply,
        fields([
          ["volume", cell(v.name)],
          ["owner", cell(v.owner)],
          ["quota", v.quotaBytes === -1 ? "unlimited" : cell(v.quotaBytes)],
          ["objectId", cell(v.objectId)],
          ["updateId", cell(v.updateId)],
          ["created", time(v.createdAt)],
          ["modified", time(v.modifiedAt)],
        ]),
      );
    }),
  );

  // ---- bucket ----
  const bucket = program.command("bucket").description("create, remove, list and inspect buckets");
  clientOptions(
    bucket
      .command("create")
      .description("create a bucket in a volume")
      .argument("<volume>")
      .argument("<bucket>")
      .option("--versioning", "turn on versioning"),
  ).action(
    action(async (session, [vol, name], flags) => {
      const reply = await session.call((c) =>
        c.createBucket(vol!, name!, flags.versioning === true ? { versioning: true } : {}),
      );
      printReply(session, reply, `created bucket ${vol}/${name}`);
    }),
  );
  clientOptions(
    bucket
      .command("rm")
      .alias("delete")
      .description("remove an empty bucket")
      .argument("<volume>")
      .argument("<bucket>"),
  ).action(
    action(async (session, [vol, name]) => {
      const reply = await session.call((c) => c.deleteBucket(vol!, name!));
      printReply(session, reply, `removed bucket ${vol}/${name}`);
    }),
  );
  clientOptions(
    listOptions(
      bucket.command("ls").alias("list").description("list a volume's buckets").argument("<volume>"),
      "buckets",
    ),
  ).action(
    action(async (session, [vol], flags) => {
      const result = await listAll(session, flags, (o) => session.client.listBuckets(vol!, o));
      printList(session, "buckets", result, ["BUCKET", "VERSIONING", "CREATED"], (b) => [
        cell(b.name),
        b.versioning === undefined ? "-" : b.versioning ? "on" : "off",
        time(b.createdAt),
      ]);
    }),
  );
  clientOptions(
    readOptions(
      bucket.command("info").description("show a bucket").argument("<volume>").argument("<bucket>"),
    ),
  ).action(
    action(async (session, [vol, name], flags) => {
      const reply = await session.call((c) =>
        c.read("infoBucket", { volume: vol, bucket: name }, readFlags(flags)),
      );
      const b = recordOf(reply, "bucket");
      printReply(
        session,
        reply,
        fields([
          ["volume", cell(b.volume)],
          ["bucket", cell(b.name)],
          ["versioning", b.versioning === undefined ? "-" : b.versioning ? "on" : "off"],
          ["objectId", cell(b.objectId)],
          ["updateId", cell(b.updateId)],
          ["created", time(b.createdAt)],
          ["modified", time(b.modifiedAt)],
        ]),
      );
    }),
  );

  // ---- key ----
  const key = program
    .command("key")
    .description("put, get, list, remove and rename keys (volume, bucket and key are separate arguments)");
  clientOptions(
    key
      .command("put")
      .description("record a key's metadata (open, then commit)")
      .argument("<volume>")
      .argument("<bucket>")
      .argument("<key>")
      .option("--size <bytes>", "the object's size", integerArg(0, 2 ** 53 - 1), 0)
      .option("--etag <etag>", "the object's etag", "")
      .option("--meta <name=value>", "user metadata (repeat for more)", metaArg),
  ).action(
    action(async (session, [vol, bkt, name], flags) => {
      const info = {
        size: flags.size as number,
        etag: flags.etag as string,
        ...(flags.meta === undefined ? {} : { metadata: flags.meta as Record<string, string> }),
      };
      const reply = await session.call((c) => c.putKey(vol!, bkt!, name!, info));
      printReply(session, reply, `put ${vol}/${bkt}/${name} (${info.size} bytes)`);
    }),
  );
  clientOptions(
    readOptions(
      key
        .command("get")
        .alias("info")
        .description("show a key's metadata")
        .argument("<volume>")
        .argument("<bucket>")
        .argument("<key>"),
    ),
  ).action(
    action(async (session, [vol, bkt, name], flags) => {
      const reply = await session.call((c) => c.lookupKey(vol!, bkt!, name!, readFlags(flags)));
      const k = recordOf(reply, "key");
      const meta = typeof k.metadata === "object" && k.metadata !== null ? Object.entries(k.metadata) : [];
      printReply(
        session,
        reply,
        fields([
          ["key", cell(k.key)],
          ["volume", cell(k.volume)],
          ["bucket", cell(k.bucket)],
          ["size", cell(k.size)],
          ["etag", cell(k.etag)],
          ["objectId", cell(k.objectId)],
          ["updateId", cell(k.updateId)],
          ["created", time(k.createdAt)],
          ["modified", time(k.modifiedAt)],
          ...meta.map(([n, v]): [string, string] => [`meta.${n}`, String(v)]),
        ]),
      );
    }),
  );
  clientOptions(
    listOptions(
      key
        .command("ls")
        .alias("list")
        .description("list a bucket's keys")
        .argument("<volume>")
        .argument("<bucket>"),
      "keys",
    ),
  ).action(
    action(async (session, [vol, bkt], flags) => {
      const result = await listAll(session, flags, (o) => session.client.listKeys(vol!, bkt!, o));
      printList(session, "keys", result, ["KEY", "SIZE", "ETAG", "MODIFIED"], (k) => [
        cell(k.key),
        cell(k.size),
        cell(k.etag),
        time(k.modifiedAt),
      ]);
    }),
  );
  clientOptions(
    key
      .command("rm")
      .alias("delete")
      .description("remove a key")
      .argument("<volume>")
      .argument("<bucket>")
      .argument("<key>"),
  ).action(
    action(async (session, [vol, bkt, name]) => {
      const reply = await session.call((c) => c.deleteKey(vol!, bkt!, name!));
      printReply(session, reply, `removed ${vol}/${bkt}/${name}`);
    }),
  );
  clientOptions(
    key
      .command("mv")
      .alias("rename")
      .description("rename a key within its bucket")
      .argument("<volume>")
      .argument("<bucket>")
      .argument("<key>")
      .argument("<toKey>"),
  ).action(
    action(async (session, [vol, bkt, name, to]) => {
      const reply = await session.call((c) => c.renameKey(vol!, bkt!, name!, to!));
      printReply(session, reply, `renamed ${vol}/${bkt}/${name} to ${to}`);
    }),
  );

  // ---- status, endpoint health ----
  clientOptions(
    program
      .command("status")
      .description(
        "ask every endpoint for its Raft status (role, term, leader, commit and applied index, " +
          "members); exit 1 if one is unreachable or there is no leader",
      ),
  ).action(
    action(async (session) => {
      await status(session);
    }),
  );
  const endpoint = program.command("endpoint").description("check the endpoints one by one");
  clientOptions(
    endpoint
      .command("health")
      .description("whether each endpoint answers and knows a leader; exit 1 if one does not"),
  ).action(
    action(async (session) => {
      await health(session);
    }),
  );
}

type NodeStatus =
  | { endpoint: string; ok: true; status: Reply }
  | { endpoint: string; ok: false; error: string; cause?: MetaraftError };

/** Why the cluster is unhealthy, as the error that makes status and health exit 1. */
function unhealthy(problems: readonly string[]): MetaraftError {
  const error = new MetaraftError("MR_ERR_UNAVAILABLE");
  // The registry's text says "no node could be reached": here some could.
  error.message = `MR_ERR_UNAVAILABLE: unhealthy: ${problems.join("; ")}`;
  return error;
}

/**
 * The leader the members report: the node that says it leads in the highest term, else the
 * leader most members of that term name.
 */
export function reportedLeader(statuses: readonly Reply[]): { leader: number | undefined; term: number } {
  const term = Math.max(0, ...statuses.map((s) => (typeof s.term === "number" ? s.term : 0)));
  const current = statuses.filter((s) => s.term === term);
  const self = current.find((s) => s.role === "leader" && typeof s.node === "number");
  if (self) return { leader: self.node as number, term };
  const votes = new Map<number, number>();
  for (const s of current) {
    if (typeof s.leader === "number" && s.leader > 0) votes.set(s.leader, (votes.get(s.leader) ?? 0) + 1);
  }
  const best = [...votes].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0];
  return { leader: best?.[0], term };
}

async function statusOf(session: Session, endpoint: Endpoint): Promise<NodeStatus & { tookMs: number }> {
  const started = performance.now();
  const took = () => Math.round((performance.now() - started) * 10) / 10;
  const row = await statusRow(session, endpoint);
  return { ...row, tookMs: took() };
}

async function statusRow(session: Session, endpoint: Endpoint): Promise<NodeStatus> {
  const where = showEndpoint(endpoint);
  const reach = await probe(endpoint, Math.min(session.timeoutMs, 3000));
  if (!reach.up) return { endpoint: where, ok: false, error: `unreachable (${reach.reason})` };
  const client = new MetaraftClient({
    endpoints: [endpoint],
    clusterId: session.clusterId,
    timeoutMs: session.timeoutMs,
  });
  try {
    return { endpoint: where, ok: true, status: body(await client.status()) };
  } catch (error) {
    const cause =
      error instanceof MetaraftError
        ? error
        : new MetaraftError("MR_ERR_INTERNAL", String(error), { cause: error });
    return { endpoint: where, ok: false, error: cause.code, cause };
  } finally {
    client.close();
  }
}

async function status(session: Session): Promise<void> {
  // Straight to each node, no leader redirection: one row per endpoint.
  const rows = await Promise.all(session.endpoints.map((e) => statusOf(session, e)));
  if (rows.every((r) => !r.ok)) {
    const failed = rows.find((r) => !r.ok && r.cause !== undefined);
    if (failed && !failed.ok && failed.cause) throw failed.cause;
    throw unavailable(
      session.endpoints,
      rows.map((r) => ({
        up: false as const,
        reason: r.ok ? "" : r.error.replace(/^unreachable \((.*)\)$/, "$1"),
      })),
    );
  }
  const answered = rows.flatMap((r) => (r.ok ? [r.status] : []));
  const { leader, term } = reportedLeader(answered);
  const problems = [
    ...rows.flatMap((r) => (r.ok ? [] : [`${r.endpoint} ${r.error}`])),
    ...(leader === undefined ? [`no leader (term ${term})`] : []),
  ];
  const summary =
    `${leader === undefined ? "leader: none" : `leader: node ${leader}`} (term ${term}); ` +
    `${answered.length} of ${rows.length} endpoints answered`;
  if (session.json) {
    out(
      json({
        healthy: problems.length === 0,
        leader: leader ?? null,
        term,
        answered: answered.length,
        endpoints: rows.length,
        problems,
        summary,
        nodes: rows.map((r) =>
          r.ok ? { endpoint: r.endpoint, ...r.status } : { endpoint: r.endpoint, error: r.cause ?? r.error },
        ),
      }),
    );
    if (problems.length > 0) throw unhealthy(problems);
    return;
  }
  out(
    table(
      ["NODE", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "MEMBERS"],
      rows.map((r) => {
        if (!r.ok) return ["?", r.endpoint, r.error];
        const s = r.status;
        const members = s.members as { voters?: number[]; learners?: number[] } | undefined;
        const learners = members?.learners?.length ? ` (learners ${members.learners.join(",")})` : "";
        return [
          cell(s.node),
          r.endpoint,
          cell(s.role),
          cell(s.term),
          typeof s.leader === "number" && s.leader > 0 ? String(s.leader) : "-",
          cell(s.commit),
          cell(s.applied),
          `${members?.voters?.join(",") ?? "-"}${learners}`,
        ];
      }),
    ),
  );
  out(summary);
  if (problems.length > 0) throw unhealthy(problems);
}

async function health(session: Session): Promise<void> {
  const rows = await Promise.all(session.endpoints.map((e) => statusOf(session, e)));
  const checks = rows.map((r) => {
    if (!r.ok) {
      return {
        endpoint: r.endpoint,
        healthy: false,
        tookMs: r.tookMs,
        node: null,
        leader: null,
        error: r.error,
      };
    }
    const known = typeof r.status.leader === "number" && r.status.leader > 0;
    return {
      endpoint: r.endpoint,
      healthy: known,
      tookMs: r.tookMs,
      node: r.status.node,
      role: r.status.role,
      term: r.status.term,
      leader: known ? r.status.leader : null,
      ...(known ? {} : { error: "no leader" }),
    };
  });
  const sick = checks.filter((c) => !c.healthy);
  if (session.json) {
    out(json({ healthy: sick.length === 0, endpoints: checks }));
  } else {
    out(
      table(
        ["ENDPOINT", "HEALTH", "TOOK", "NODE", "LEADER", "ERROR"],
        checks.map((c) => [
          c.endpoint,
          c.healthy ? "healthy" : "unhealthy",
          `${c.tookMs}ms`,
          cell(c.node),
          cell(c.leader),
          cell(c.error),
        ]),
      ),
    );
  }
  if (sick.length > 0) {
    throw unhealthy(sick.map((c) => `${c.endpoint} ${c.error ?? "unhealthy"}`));
  }
}

function memberId(value: string): number {
  return integerArg(1, 0xffffffff)(value);
}

function membersLine(reply: Reply): string {
  const members = (reply.members ?? {}) as { voters?: number[]; learners?: number[] };
  const learners = members.learners?.length ? `; learners ${members.learners.join(",")}` : "";
  return `members: voters ${(members.voters ?? []).join(",")}${learners}`;
}

/** `member ls|add|promote|remove` and `leader transfer`: membership changed online, on the leader. */
function addMemberVerbs(program: Command): void {
  const member = program.command("member").description("list, add, promote and remove cluster members");
  clientOptions(
    member
      .command("ls")
      .alias("list")
      .description(
        "every member: id, peer and client addresses, voter or learner, match index, lag, reachable",
      ),
  ).action(
    action(async (session) => {
      const reply = await session.call((c) => c.memberList());
      if (session.json) {
        out(json(body(reply)));
        return;
      }
      const rows = (reply.members as Reply[]).map((m) => [
        cell(m.id),
        cell(m.role),
        cell(m.peer),
        cell(m.client),
        cell(m.match),
        cell(m.lag),
        m.reachable === undefined ? "-" : m.reachable ? "yes" : "no",
      ]);
      out(table(["ID", "ROLE", "PEER", "CLIENT", "MATCH", "LAG", "REACHABLE"], rows));
      out(`leader: node ${cell(reply.leader)} (term ${cell(reply.term)})`);
    }),
  );
  clientOptions(
    member
      .command("add")
      .description("add a learner (start it with 'metaraft start --join HOST:PORT', then promote it)")
      .argument("<id>", "the new member's node id", memberId)
      .requiredOption("--peer <host:port>", "the new member's Raft (peer) address")
      .requiredOption("--client <host:port>", "the new member's client address"),
  ).action(
    action(async (session, [id], flags) => {
      const node = Number(id);
      const reply = await session.call((c) =>
        c.memberAdd(node, { peer: flags.peer as string, client: flags.client as string }),
      );
      printReply(session, reply, `added learner ${node}; ${membersLine(reply)}`);
    }),
  );
  clientOptions(
    member
      .command("promote")
      .description("make a learner a voter (refused until it has caught up)")
      .argument("<id>", "the learner's node id", memberId),
  ).action(
    action(async (session, [id]) => {
      const reply = await session.call((c) => c.memberPromote(Number(id)));
      printReply(session, reply, `promoted ${id}; ${membersLine(reply)}`);
    }),
  );
  clientOptions(
    member
      .command("remove")
      .alias("rm")
      .description("remove a member (a removed leader steps down)")
      .argument("<id>", "the member's node id", memberId),
  ).action(
    action(async (session, [id]) => {
      const reply = await session.call((c) => c.memberRemove(Number(id)));
      printReply(session, reply, `removed ${id}; ${membersLine(reply)}`);
    }),
  );
  const leader = program.command("leader").description("leadership");
  clientOptions(
    leader
      .command("transfer")
      .description("hand leadership to a voter")
      .argument("<id>", "the voter's node id", memberId),
  ).action(
    action(async (session, [id]) => {
      const reply = await session.call((c) => c.leaderTransfer(Number(id)));
      printReply(session, reply, `leader is now node ${cell(reply.leader)}`);
    }),
  );
}
