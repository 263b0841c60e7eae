import { spawn } from "node:child_process";
import type { Command } from "commander";
import { Election, type Leader, Mutex } from "../client/lock.js";
import type { Session as KvSession } from "../client/session.js";
import { usage } from "./output.js";
import { action, type Session as CliSession, clientOptions, integerArg, out, type Reply } from "./verbs.js";

/**
 * etcdctl's `lock` and `elect`: `metaraft lock NAME [COMMAND...]` holds the lock `NAME/` (for
 * the command's run, or until interrupted); `metaraft elect NAME PROPOSAL` campaigns and leads
 * until interrupted; `metaraft elect NAME --listen` prints each leader as it changes.
 */

const TTL_DEFAULT_MS = 10_000;
const TTL_OPTION = [
  "--ttl-ms <ms>",
  `the session's TTL (default ${TTL_DEFAULT_MS})`,
  integerArg(2_000, 86_400_000),
] as const;

const prefixOf = (name: string): string => {
  if (name.length === 0) throw usage("a lock's name is empty");
  return name.endsWith("/") ? name : `${name}/`;
};

function valueText(value: string | Uint8Array): string {
  return typeof value === "string" ? value : `base64:${Buffer.from(value).toString("base64")}`;
}

/** Resolves at the first SIGINT or SIGTERM, or when the session ends (rejects then). */
function untilInterrupted(session: KvSession): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    session.ended.then((error) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      if (error) reject(error);
      else resolve();
    });
  });
}

/**
 * Opens a session, runs `acquire` with a signal that Ctrl-C (or SIGTERM) aborts while it waits,
 * then `hold` with what it got; the session is closed at the end, whatever happens.
 */
async function withSession<T>(
  cli: CliSession,
  ttlMs: number | undefined,
  acquire: (session: KvSession, signal: AbortSignal) => Promise<T>,
  hold: (got: T, session: KvSession) => Promise<void>,
): Promise<void> {
  const session = await cli.call((c) => c.createSession({ ttlMs: ttlMs ?? TTL_DEFAULT_MS }));
  const abort = new AbortController();
  const interrupt = () => abort.abort();
  process.once("SIGINT", interrupt);
  process.once("SIGTERM", interrupt);
  try {
    const got = await acquire(session, abort.signal);
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
    await hold(got, session);
  } finally {
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
    await session.close().catch(() => {});
  }
}

export function addLockVerbs(program: Command): void {
  clientOptions(
    program
      .command("lock <name> [command...]")
      .description(
        "acquire the lock NAME/ (etcdctl lock): run COMMAND while holding it and release it when the command exits (its exit status is lock's), or without COMMAND hold it until Ctrl-C; waiters take it in order, and a holder that dies loses it within its session's TTL",
      )
      .option(...TTL_OPTION),
  ).action(
    action(async (cli, args, flags) => {
      const [name, command] = args as [string, string[]];
      const prefix = prefixOf(name);
      let mutex: Mutex | undefined;
      await withSession(
        cli,
        flags.ttlMs as number | undefined,
        (session, signal) => {
          mutex = new Mutex(cli.client, session, prefix);
          return mutex.lock({ signal });
        },
        async (token, session) => {
          const { key } = mutex!;
          const record: Reply = { event: "locked", key, token };
          out(cli.json ? JSON.stringify(record) : `${key} token ${token}`);
          if (command.length === 0) {
            await untilInterrupted(session);
          } else {
            // The token goes to the command, for the stores it writes to fence off older holders.
            const child = spawn(command[0]!, command.slice(1), {
              stdio: "inherit",
              env: { ...process.env, METARAFT_LOCK_KEY: key, METARAFT_LOCK_TOKEN: String(token) },
            });
            process.exitCode = await new Promise<number>((resolve, reject) => {
              child.once("error", reject);
              child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
            });
          }
          await mutex!.unlock();
        },
      );
    }),
  );

  clientOptions(
    program
      .command("elect <name> [proposal]")
      .description(
        "campaign in the election NAME/ with PROPOSAL and lead until Ctrl-C (etcdctl elect), or with --listen print each leader's proposal as leaders change",
      )
      .option("-l, --listen", "follow the election's leader instead of campaigning")
      .option(...TTL_OPTION),
  ).action(
    action(async (cli, args, flags) => {
      const [name, proposal] = args as [string, string | undefined];
      const prefix = prefixOf(name);
      if (flags.listen === true) {
        if (proposal !== undefined) throw usage("elect --listen takes no proposal");
        const abort = new AbortController();
        process.once("SIGINT", () => abort.abort());
        process.once("SIGTERM", () => abort.abort());
        for await (const leader of Election.observe(cli.client, prefix, { signal: abort.signal })) {
          out(leaderLine(leader, cli.json));
        }
        return;
      }
      if (proposal === undefined) throw usage("elect needs a proposal, or --listen");
      let election: Election | undefined;
      await withSession(
        cli,
        flags.ttlMs as number | undefined,
        (session, signal) => {
          election = new Election(cli.client, session, prefix);
          return election.campaign(proposal, { signal });
        },
        async (token, session) => {
          const { key } = election!;
          const record: Reply = { event: "elected", key, token, proposal };
          out(cli.json ? JSON.stringify(record) : `${key} token ${token}: leading with ${proposal}`);
          await untilInterrupted(session);
          await election!.resign();
        },
      );
    }),
  );
}

function leaderLine(leader: Leader | undefined, json: boolean): string {
  if (json) {
    return JSON.stringify(
      leader ? { key: leader.key, token: leader.token, value: valueText(leader.value) } : { key: null },
    );
  }
  return leader ? `${leader.key} token ${leader.token}: ${valueText(leader.value)}` : "(no leader)";
}
