import type { Command } from "commander";
import {
  AGENT_DEFAULTS,
  AGENT_ID,
  AGENTS_PREFIX,
  Agent,
  type AgentInfo,
  type AgentStatus,
  agentConfigPrefix,
  type ConfigChange,
} from "../client/agent.js";
import { cell, json, table, time, usage } from "./output.js";
import { action, clientOptions, integerArg, out, type Reply, type Session } from "./verbs.js";

/**
 * The control plane's verbs: `metaraft agent --id ID` (run an agent in the foreground),
 * `agents ls`, `config push|ls|rm` (an agent's configuration, under `agents/ID/config/`), and
 * `session ls|get|close`.
 */

/** Pages of 1,000 entries `agents ls` reads at most. */
const AGENT_PAGES_MAX = 100;

function valueText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return `base64:${Buffer.from(value).toString("base64")}`;
  return cell(value);
}

function parseJson<T>(value: unknown): T | undefined {
  if (typeof value !== "string") return undefined;
  try {
    return JSON.parse(value) as T;
  } catch {
    return undefined;
  }
}

function checkAgentId(id: string): string {
  if (!AGENT_ID.test(id)) {
    throw usage(
      `an agent id is 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit: ${JSON.stringify(id)}`,
    );
  }
  return id;
}

export interface AgentRow {
  readonly id: string;
  readonly state: "alive" | "expired" | "closed" | "unknown";
  readonly sessionId: number | null;
  /** Milliseconds since the leader last heard its heartbeat (null when it does not know). */
  readonly heartbeatAgeMs: number | null;
  readonly version: string | null;
  readonly health: unknown;
  readonly host: string | null;
  readonly configKeys: number;
}

/** Every agent under `agents/`: the persistent info, the ephemeral status, and the leader's heartbeat ages. */
async function agentRows(session: Session): Promise<AgentRow[]> {
  const byId = new Map<string, { info?: AgentInfo; status?: AgentStatus; configKeys: number }>();
  let startAfter: string | undefined;
  for (let page = 0; page < AGENT_PAGES_MAX; page++) {
    const reply = await session.call((c) =>
      c.kvRange(AGENTS_PREFIX, startAfter === undefined ? {} : { startAfter }),
    );
    for (const entry of reply.items as { key: string; value: unknown }[]) {
      const rest = entry.key.slice(AGENTS_PREFIX.length);
      const slash = rest.indexOf("/");
      if (slash <= 0) continue;
      const id = rest.slice(0, slash);
      const what = rest.slice(slash + 1);
      const row = byId.get(id) ?? { configKeys: 0 };
      byId.set(id, row);
      if (what === "info") row.info = parseJson<AgentInfo>(entry.value);
      else if (what === "status") row.status = parseJson<AgentStatus>(entry.value);
      else if (what.startsWith("config/")) row.configKeys++;
    }
    if (reply.truncated !== true) break;
    startAfter = reply.nextStartAfter as string;
  }
  const liveIds = [...byId.values()].flatMap((r) => (r.status ? [r.status.sessionId] : []));
  const liveness = new Map<number, number | null>();
  if (liveIds.length > 0) {
    try {
      const reply = await session.call((c) => c.sessionStatus(liveIds));
      for (const s of reply.sessions as { id: number; lastHeartbeatAgeMs: number | null }[]) {
        liveness.set(s.id, s.lastHeartbeatAgeMs);
      }
    } catch {
      // No ready leader: the ages are unknown, the rest still shows.
    }
  }
  const rows: AgentRow[] = [];
  for (const [id, r] of [...byId].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const sessionId = r.status?.sessionId ?? r.info?.sessionId ?? null;
    let state: AgentRow["state"] = r.status ? "alive" : "unknown";
    let heartbeatAgeMs: number | null = sessionId === null ? null : (liveness.get(sessionId) ?? null);
    if (!r.status && sessionId !== null) {
      const got = await session.call((c) => c.sessionGet(sessionId));
      const ended = got.ended as {
        reason: "expired" | "closed";
        lastHeartbeatAt: number;
        endedAt: number;
      } | null;
      if (ended) {
        state = ended.reason;
        heartbeatAgeMs = ended.lastHeartbeatAt > 0 ? Date.now() - ended.lastHeartbeatAt : null;
      }
    }
    rows.push({
      id,
      state,
      sessionId,
      heartbeatAgeMs,
      version: r.status?.version ?? r.info?.version ?? null,
      health: r.status?.health ?? null,
      host: r.info?.host ?? null,
      configKeys: r.configKeys,
    });
  }
  return rows;
}

function age(ms: number | null): string {
  if (ms === null) return "-";
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

export function addAgentVerbs(program: Command): void {
  clientOptions(
    program
      .command("agent")
      .description(
        "run an agent: a session, the ephemeral agents/ID/status, and every change pushed to agents/ID/config/ printed in order (Ctrl-C closes the session)",
      )
      .requiredOption("--id <id>", "the agent's id")
      .option(
        "--ttl-ms <ms>",
        `the session's TTL (default ${AGENT_DEFAULTS.ttlMs})`,
        integerArg(2_000, 86_400_000),
      )
      .option("--agent-version <version>", "the version its status shows", "unknown")
      .option("--health <text>", "the health its status shows", "ok")
      .option(
        "--no-discover-endpoints",
        "use only the given endpoints, never the members' own addresses (behind a proxy or NAT)",
      ),
  ).action(
    action(async (session, _args, flags) => {
      const id = checkAgentId(flags.id as string);
      const print = (record: Reply, human: string) => out(session.json ? JSON.stringify(record) : human);
      const agent = new Agent({
        id,
        endpoints: session.endpoints,
        clusterId: session.clusterId,
        timeoutMs: session.timeoutMs,
        ...(flags.ttlMs === undefined ? {} : { ttlMs: flags.ttlMs as number }),
        version: flags.agentVersion as string,
        ...(flags.discoverEndpoints === false ? { discoverEndpoints: false } : {}),
        health: () => flags.health as string,
        onConfig: (change: ConfigChange) =>
          print(
            {
              event: "config",
              key: change.key,
              value: change.value === null ? null : valueText(change.value),
              txid: change.txid,
            },
            change.value === null
              ? `config ${change.key} deleted (txid ${change.txid})`
              : `config ${change.key}=${valueText(change.value)} (txid ${change.txid})`,
          ),
      });
      agent.on("registered", (sessionId: number) =>
        print(
          { event: "registered", agent: id, sessionId },
          `registered agent ${id} with session ${sessionId}`,
        ),
      );
      agent.on("sessionLost", (error: Error) =>
        print(
          { event: "sessionLost", message: error.message },
          `session lost: ${error.message}; registering again`,
        ),
      );
      agent.on("disconnected", () =>
        print({ event: "disconnected" }, "heartbeats failing: the cluster is unreachable"),
      );
      agent.on("reconnected", () => print({ event: "reconnected" }, "heartbeats reach the cluster again"));
      agent.on("error", (error: Error) => process.stderr.write(`warning: ${error.message}\n`));
      await agent.start();
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await agent.stop();
      print({ event: "stopped", agent: id }, `agent ${id} stopped; its session is closed`);
    }),
  );

  const agents = program.command("agents").description("the agents of the control plane");
  clientOptions(
    agents
      .command("ls")
      .alias("list")
      .description("every agent, alive or expired, with the age of its last heartbeat"),
  ).action(
    action(async (session) => {
      const rows = await agentRows(session);
      if (session.json) {
        out(json({ agents: rows }));
        return;
      }
      if (rows.length === 0) return;
      out(
        table(
          ["AGENT", "STATE", "SESSION", "LAST HEARTBEAT", "VERSION", "HEALTH", "HOST", "CONFIG KEYS"],
          rows.map((r) => [
            r.id,
            r.state,
            cell(r.sessionId ?? "-"),
            age(r.heartbeatAgeMs),
            cell(r.version ?? "-"),
            typeof r.health === "string" ? r.health : cell(r.health ?? "-"),
            cell(r.host ?? "-"),
            cell(r.configKeys),
          ]),
        ),
      );
    }),
  );

  const config = program
    .command("config")
    .description("an agent's configuration, pushed to it as it changes");
  clientOptions(
    config
      .command("push")
      .description(
        "set KEY to VALUE in the agent's configuration (agents/AGENT/config/KEY); the agent gets it in order",
      )
      .argument("<agent>")
      .argument("<key>")
      .argument("<value>"),
  ).action(
    action(async (session, [agent, key, value]) => {
      const reply = await session.call((c) =>
        c.kvPut(`${agentConfigPrefix(checkAgentId(agent!))}${key!}`, value!),
      );
      out(session.json ? json({ txid: reply.txid }) : `pushed ${key} to ${agent} (txid ${cell(reply.txid)})`);
    }),
  );
  clientOptions(
    config.command("ls").alias("list").description("the agent's configuration").argument("<agent>"),
  ).action(
    action(async (session, [agent]) => {
      const prefix = agentConfigPrefix(checkAgentId(agent!));
      const reply = await session.call((c) => c.kvRange(prefix));
      const items = (reply.items as { key: string; value: unknown; modTxid: number }[]).map((e) => ({
        key: e.key.slice(prefix.length),
        value: valueText(e.value),
        modTxid: e.modTxid,
      }));
      if (session.json) out(json({ items }));
      else if (items.length > 0)
        out(
          table(
            ["KEY", "VALUE", "MOD TXID"],
            items.map((i) => [i.key, i.value, cell(i.modTxid)]),
          ),
        );
    }),
  );
  clientOptions(
    config
      .command("rm")
      .description("delete KEY from the agent's configuration")
      .argument("<agent>")
      .argument("<key>"),
  ).action(
    action(async (session, [agent, key]) => {
      const reply = await session.call((c) =>
        c.kvDelete(`${agentConfigPrefix(checkAgentId(agent!))}${key!}`),
      );
      out(session.json ? json({ deleted: reply.deleted }) : String(reply.deleted));
    }),
  );

  const sessions = program.command("session").description("sessions: list, inspect and close");
  clientOptions(
    sessions
      .command("ls")
      .alias("list")
      .description(
        "open sessions with their TTL, the TTL left and the age of the last heartbeat (the leader's view)",
      )
      .option("--ended", "the sessions that ended last (expired or closed) instead")
      .option("--limit <n>", "at most this many (1 to 1000)", integerArg(1, 1000)),
  ).action(
    action(async (session, _args, flags) => {
      const ended = flags.ended === true;
      const reply = await session.call((c) =>
        c.sessionList({ ended, ...(flags.limit === undefined ? {} : { limit: flags.limit as number }) }),
      );
      const items = reply.items as Reply[];
      if (ended) {
        if (session.json) out(json({ items, truncated: reply.truncated }));
        else if (items.length > 0) {
          out(
            table(
              ["SESSION", "REASON", "TTL", "ENDED", "LAST HEARTBEAT"],
              items.map((s) => [
                cell(s.id),
                cell(s.reason),
                `${cell(s.ttlMs)}ms`,
                time(s.endedAt),
                (s.lastHeartbeatAt as number) > 0 ? time(s.lastHeartbeatAt) : "-",
              ]),
            ),
          );
        }
        return;
      }
      const live = new Map<number, { remainingMs: number; lastHeartbeatAgeMs: number | null }>();
      try {
        const status = await session.call((c) => c.sessionStatus(items.map((s) => s.id as number)));
        for (const s of status.sessions as {
          id: number;
          remainingMs: number;
          lastHeartbeatAgeMs: number | null;
        }[]) {
          live.set(s.id, s);
        }
      } catch {
        // No ready leader: only the replicated records show.
      }
      const rows: Reply[] = items.map((s) => ({ ...s, ...(live.get(s.id as number) ?? {}) }));
      if (session.json) {
        out(json({ items: rows, open: reply.open, truncated: reply.truncated }));
        return;
      }
      if (rows.length > 0) {
        out(
          table(
            ["SESSION", "TTL", "LEFT", "LAST HEARTBEAT", "EPHEMERAL", "CREATED"],
            rows.map((s) => [
              cell(s.id),
              `${cell(s.ttlMs)}ms`,
              s.remainingMs === undefined ? "-" : `${cell(s.remainingMs)}ms`,
              age((s.lastHeartbeatAgeMs as number | null | undefined) ?? null),
              cell(s.ephemeralCount),
              time(s.createdAt),
            ]),
          ),
        );
      }
    }),
  );
  clientOptions(
    sessions
      .command("get")
      .description("a session: its record and ephemeral keys, or how it ended")
      .argument("<id>", "the session id", integerArg(1, Number.MAX_SAFE_INTEGER)),
  ).action(
    action(async (session, [id]) => {
      const reply = await session.call((c) => c.sessionGet(Number(id)));
      out(json({ session: reply.session, ended: reply.ended }));
    }),
  );
  clientOptions(
    sessions
      .command("close")
      .description("close a session: its ephemeral entries are deleted at once")
      .argument("<id>", "the session id", integerArg(1, Number.MAX_SAFE_INTEGER)),
  ).action(
    action(async (session, [id]) => {
      const reply = await session.call((c) => c.closeSession(Number(id)));
      out(
        session.json
          ? json({ deleted: reply.deleted })
          : `closed session ${id}; ${cell(reply.deleted)} ephemeral entries deleted`,
      );
    }),
  );
}
