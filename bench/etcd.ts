/**
 * etcd for the benchmarks that compare against it (bench:sessions, bench:locks): a 3-member
 * cluster of Debian's etcd-server 3.4 on loopback, and etcd's waiting Mutex built on the etcd3
 * npm package's primitives.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3, type IKeyValue } from "etcd3";
import { freePort } from "../test/helpers/cluster.js";
import { stopChild, waitUntil } from "./common.js";

/** The etcd members must elect a leader within this long of starting. */
const ETCD_START_MS_MAX = 30_000;
/** A member busy past this in a status call is taken as not answering. */
const STATUS_TIMEOUT_MS = 5000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface EtcdClusterOptions {
  /** etcd's --heartbeat-interval: metaraft's tick, to compare like with like. */
  readonly tickMs: number;
  /** etcd's --election-timeout in ticks: metaraft's election ticks. */
  readonly electionTicks: number;
  /** etcd's --initial-cluster-token: names the bench that started it. */
  readonly token: string;
}

/** Three etcd members on loopback, data in a temp dir, fsync on (etcd's only mode in 3.4). */
export class EtcdCluster {
  readonly dir = mkdtempSync(join(tmpdir(), "bench-etcd-"));
  readonly members: { name: string; client: number; peer: number; proc: ChildProcess | null }[] = [];
  readonly #status: Etcd3[] = [];

  static async start(options: EtcdClusterOptions): Promise<EtcdCluster> {
    const c = new EtcdCluster();
    for (let i = 1; i <= 3; i++)
      c.members.push({ name: `e${i}`, client: await freePort(), peer: await freePort(), proc: null });
    const initial = c.members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(",");
    for (const m of c.members) {
      m.proc = spawn(
        "etcd",
        [
          `--name=${m.name}`,
          `--data-dir=${join(c.dir, m.name)}`,
          `--listen-client-urls=http://127.0.0.1:${m.client}`,
          `--advertise-client-urls=http://127.0.0.1:${m.client}`,
          `--listen-peer-urls=http://127.0.0.1:${m.peer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${m.peer}`,
          `--initial-cluster=${initial}`,
          "--initial-cluster-state=new",
          `--initial-cluster-token=${options.token}`,
          // metaraft's timing: a heartbeat every tick, an election after 10 ticks.
          `--heartbeat-interval=${options.tickMs}`,
          `--election-timeout=${options.tickMs * options.electionTicks}`,
          "--logger=zap",
          "--log-level=error",
        ],
        { stdio: ["ignore", "ignore", "inherit"] },
      );
      c.#status.push(new Etcd3({ hosts: [`127.0.0.1:${m.client}`] }));
    }
    await waitUntil("an etcd leader", ETCD_START_MS_MAX, async () => (await c.leader()) >= 0);
    return c;
  }

  host(i: number): string {
    return `127.0.0.1:${this.members[i]!.client}`;
  }

  pid(i: number): number | undefined {
    return this.members[i]!.proc?.pid;
  }

  /** The index of the leading member (-1: none yet), from every member's own status. */
  async leader(): Promise<number> {
    const statuses = await Promise.all(
      this.#status.map((s) =>
        Promise.race([
          s.maintenance.status({}),
          sleep(STATUS_TIMEOUT_MS).then(() => {
            throw new Error("no status");
          }),
        ]).catch(() => null),
      ),
    );
    for (const [i, s] of statuses.entries()) {
      if (s && s.leader !== "0" && s.leader === s.header.member_id) return i;
    }
    return -1;
  }

  async leaseCount(i: number): Promise<number | null> {
    try {
      return (await this.#status[i]!.leaseClient.leaseLeases({})).leases.length;
    } catch {
      return null;
    }
  }

  async stop(): Promise<void> {
    for (const s of this.#status) s.close();
    await Promise.all(this.members.map((m) => m.proc && stopChild(m.proc)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function etcdVersion(): string | null {
  try {
    return execFileSync("etcd", ["--version"], { encoding: "utf8" }).split("\n")[0]!.trim();
  } catch {
    return null;
  }
}

/**
 * etcd's waiting lock, step for step as its Go client builds it (client/v3/concurrency/mutex.go;
 * the etcd3 npm package's own `Lock` only tries once). The key is `prefix` plus the lease id in
 * hex, put with the lease by a txn only if it does not exist; the same txn reads the oldest key
 * under the prefix, so an uncontended lock costs one call. Otherwise it waits for the deletion of
 * the newest key created before its own (from the revision of that read), reads again, and
 * finally checks that its own key survived (the lease may have expired meanwhile).
 */
export class EtcdMutex {
  readonly key: string;
  readonly #client: Etcd3;
  readonly #leaseId: string;
  readonly #prefix: string;

  /** `leaseId` as `Lease.grant()` gives it (decimal); `client` is the one that keeps it alive. */
  constructor(client: Etcd3, leaseId: string, prefix: string) {
    this.#client = client;
    this.#leaseId = leaseId;
    this.#prefix = prefix;
    this.key = `${prefix}${BigInt(leaseId).toString(16)}`;
  }

  /** Waits until this lease holds the lock; returns the key's create revision (its fencing token). */
  async lock(): Promise<string> {
    const c = this.#client;
    const owner = () => c.getAll().prefix(this.#prefix).sort("Create", "Ascend").limit(1);
    const reply = await c
      .if(this.key, "Create", "==", 0)
      .then(c.put(this.key).value("").lease(this.#leaseId), owner())
      .else(c.get(this.key), owner())
      .commit();
    const rangeKvs = (i: number): IKeyValue[] => reply.responses[i]?.response_range?.kvs ?? [];
    // A retry finds its own key, made before: its create revision is the lease's place in line.
    const mine = reply.succeeded ? reply.header.revision : rangeKvs(0)[0]!.create_revision;
    const first = rangeKvs(1)[0];
    if (first === undefined || first.create_revision === mine) return mine;
    const before = (BigInt(mine) - 1n).toString();
    for (;;) {
      const last = await c
        .getAll()
        .prefix(this.#prefix)
        .maxCreateRevision(before)
        .sort("Create", "Descend")
        .limit(1)
        .exec();
      const predecessor = last.kvs[0];
      if (predecessor === undefined) break;
      await this.#deleted(predecessor.key, last.header.revision);
    }
    if ((await c.get(this.key).exec()).kvs.length === 0) {
      throw new Error(`${this.key} is gone: lease ${this.#leaseId} expired while it waited`);
    }
    return mine;
  }

  unlock(): Promise<unknown> {
    return this.#client.delete().key(this.key).exec();
  }

  /** Returns once `key` is deleted at or after `revision`. */
  async #deleted(key: Buffer, revision: string): Promise<void> {
    const watcher = await this.#client.watch().key(key).startRevision(revision).only("delete").create();
    try {
      await new Promise((resolve, reject) => {
        watcher.once("delete", resolve);
        watcher.once("error", reject);
      });
    } finally {
      await watcher.cancel();
    }
  }
}
