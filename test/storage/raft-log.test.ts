import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { open } from "lmdb";
import { MetaraftError } from "../../src/errors.js";
import {
  type ConfState,
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  type Entry,
  type HardState,
  MemoryStorage,
  type RaftLogStore,
  type RaftUpdate,
  type Snapshot,
} from "../../src/raft/index.js";
import { LmdbRaftLog, openEnvironment } from "../../src/storage/index.js";
import { CRASH_CONF, crashData, crashTerm } from "./fixtures/append-loop.js";

// ---- helpers

const MAX = Number.MAX_SAFE_INTEGER;
const CONF: ConfState = { voters: [1, 2, 3], learners: [4] };

const dataOf = (index: number, term: number, size = 3): Uint8Array =>
  Uint8Array.from({ length: size }, (_, k) => (index * 31 + term * 7 + k) & 0xff);

const entry = (index: number, term: number, size = 3): Entry => ({
  index,
  term,
  type: index % 5 === 0 ? "confChange" : "normal",
  data: dataOf(index, term, size),
});

/** Entries `from..to` (inclusive), all of one term. */
const run = (from: number, to: number, term: number, size = 3): Entry[] => {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term, size));
  return out;
};

const snap = (index: number, term: number, confState = CONF, data = dataOf(index, term, 5)): Snapshot => ({
  meta: { index, term, confState },
  data,
});

async function save(store: RaftLogStore, update: Partial<RaftUpdate>): Promise<void> {
  await store.save({ hardState: null, entries: [], snapshot: null, ...update });
}

type Outcome<T> = { readonly ok: T } | { readonly code: string };

/** What a call came to: its value or its error code (anything but a MetaraftError fails). */
function outcome<T>(call: () => T): Outcome<T> {
  try {
    return { ok: call() };
  } catch (error) {
    if (!(error instanceof MetaraftError)) throw error;
    return { code: error.code };
  }
}

async function outcomeAsync(call: () => Promise<void> | void): Promise<Outcome<undefined>> {
  try {
    await call();
    return { ok: undefined };
  } catch (error) {
    if (!(error instanceof MetaraftError)) throw error;
    return { code: error.code };
  }
}

const throwsCode = (call: () => unknown, code: string, message?: RegExp): void => {
  assert.throws(call, (error: unknown) => {
    assert.ok(error instanceof MetaraftError, String(error));
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
};

const hex = (data: Uint8Array): string =>
  Buffer.from(data.buffer, data.byteOffset, data.length).toString("hex");
const plain = (entries: readonly Entry[]) => entries.map((e) => ({ ...e, data: hex(e.data) }));

/** Everything a reader can see, as plain data (entries' bytes as hex). */
function observe(store: RaftLogStore) {
  const first = store.firstIndex();
  const last = store.lastIndex();
  const terms: Outcome<number>[] = [];
  for (let i = first - 2; i <= last + 1; i++) terms.push(outcome(() => store.term(i)));
  const entries = outcome(() => plain(store.entries(first, last + 1, MAX)));
  const snapshot = store.snapshot();
  return {
    first,
    last,
    terms,
    entries,
    initialState: store.initialState(),
    snapshot: { meta: snapshot.meta, data: hex(snapshot.data) },
  };
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "metaraft-raftlog-"));
  tempDirs.push(dir);
  return dir;
}

// ---- the shared suite

interface Subject {
  readonly name: string;
  create(confState?: ConfState): RaftLogStore;
}

const opened: RaftLogStore[] = [];
/** Every test leaves no open environment and no temporary directory behind. */
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** An LmdbRaftLog that afterEach closes if the test did not (close is idempotent). */
function openLog(dir: string, options: Parameters<typeof LmdbRaftLog.open>[1] = {}): LmdbRaftLog {
  const log = LmdbRaftLog.open(dir, options);
  opened.push(log);
  return log;
}

const subjects: Subject[] = [
  { name: "MemoryStorage", create: (confState) => new MemoryStorage(confState) },
  {
    name: "LmdbRaftLog",
    create: (confState) => {
      return openLog(tempDir(), confState ? { confState } : {});
    },
  },
];

for (const subject of subjects) {
  describe(`RaftLogStore contract: ${subject.name}`, () => {
    test("a new log is empty at index 0, with the membership it was given", () => {
      const store = subject.create(CONF);
      assert.equal(store.firstIndex(), 1);
      assert.equal(store.lastIndex(), 0);
      assert.equal(store.term(0), 0);
      assert.deepEqual(store.initialState(), { hardState: EMPTY_HARD_STATE, confState: CONF });
      assert.deepEqual(store.snapshot(), snap(0, 0, CONF, new Uint8Array(0)));
      assert.deepEqual(subject.create().initialState().confState, EMPTY_CONF_STATE);
    });

    test("appends and reads ranges [lo, hi)", async () => {
      const store = subject.create();
      await save(store, { entries: run(1, 5, 1) });
      await save(store, { entries: run(6, 7, 2) });
      assert.equal(store.firstIndex(), 1);
      assert.equal(store.lastIndex(), 7);
      assert.deepEqual(plain(store.entries(1, 8, MAX)), plain([...run(1, 5, 1), ...run(6, 7, 2)]));
      assert.deepEqual(plain(store.entries(2, 4, MAX)), plain(run(2, 3, 1)));
      assert.deepEqual(plain(store.entries(5, 7, MAX)), plain([entry(5, 1), entry(6, 2)]));
      assert.deepEqual(store.entries(3, 3, MAX), []);
      throwsCode(() => store.entries(0, 2, MAX), "MR_ERR_LOG_COMPACTED");
      throwsCode(() => store.entries(1, 9, MAX), "MR_ERR_LOG_UNAVAILABLE");
      assert.equal(store.entries(7, 8, MAX).length, 1);
    });

    test("entries() stops before passing maxBytes, but returns at least one", async () => {
      const store = subject.create();
      await save(store, { entries: run(1, 5, 1, 10) });
      const count = (maxBytes: number) => store.entries(1, 6, maxBytes).length;
      assert.equal(count(0), 1);
      assert.equal(count(19), 1);
      assert.equal(count(20), 2);
      assert.equal(count(29), 2);
      assert.equal(count(30), 3);
      assert.equal(count(49), 4);
      assert.equal(count(50), 5);
      assert.equal(store.entries(3, 6, 10).length, 1);
      assert.deepEqual(plain(store.entries(3, 6, 20)), plain(run(3, 4, 1, 10)));
    });

    test("term() at the boundaries of the log", async () => {
      const store = subject.create();
      throwsCode(() => store.term(1), "MR_ERR_LOG_UNAVAILABLE");
      throwsCode(() => store.term(-1), "MR_ERR_LOG_COMPACTED");
      await save(store, { entries: [entry(1, 2), entry(2, 2), entry(3, 3)] });
      assert.deepEqual(
        [0, 1, 2, 3].map((i) => store.term(i)),
        [0, 2, 2, 3],
      );
      throwsCode(() => store.term(4), "MR_ERR_LOG_UNAVAILABLE");
      store.createSnapshot(2, CONF, dataOf(2, 2));
      store.compact(3);
      assert.equal(store.firstIndex(), 3);
      assert.equal(store.term(2), 2);
      assert.equal(store.term(3), 3);
      throwsCode(() => store.term(1), "MR_ERR_LOG_COMPACTED");
    });

    test("entries replace a conflicting tail, and may not leave a gap", async () => {
      const store = subject.create();
      await save(store, { entries: run(1, 5, 1) });
      await save(store, { entries: run(3, 4, 2) });
      assert.equal(store.lastIndex(), 4);
      assert.deepEqual(
        [1, 2, 3, 4].map((i) => store.term(i)),
        [1, 1, 2, 2],
      );
      assert.deepEqual(plain(store.entries(1, 5, MAX)), plain([...run(1, 2, 1), ...run(3, 4, 2)]));
      throwsCode(
        () => store.save({ hardState: null, entries: [entry(6, 2)], snapshot: null }),
        "MR_ERR_INTERNAL",
      );
      assert.equal(store.lastIndex(), 4);
      await save(store, { entries: [entry(5, 3)] });
      assert.equal(store.lastIndex(), 5);
      // A shorter rewrite drops the tail after it, even where the terms agree.
      await save(store, { entries: run(2, 2, 1) });
      assert.equal(store.lastIndex(), 2);
      throwsCode(() => store.term(3), "MR_ERR_LOG_UNAVAILABLE");
    });

    test("compaction drops entries up to the snapshot: COMPACTED below, UNAVAILABLE above", async () => {
      const store = subject.create();
      await save(store, { entries: run(1, 10, 1) });
      store.createSnapshot(6, CONF, dataOf(6, 1));
      store.compact(5);
      assert.equal(store.firstIndex(), 5);
      assert.equal(store.lastIndex(), 10);
      assert.equal(store.term(4), 1);
      throwsCode(() => store.term(3), "MR_ERR_LOG_COMPACTED");
      throwsCode(() => store.entries(4, 6, MAX), "MR_ERR_LOG_COMPACTED");
      throwsCode(() => store.entries(5, 12, MAX), "MR_ERR_LOG_UNAVAILABLE");
      assert.deepEqual(plain(store.entries(5, 11, MAX)), plain(run(5, 10, 1)));
      store.compact(4); // behind the first index: nothing to do
      assert.equal(store.firstIndex(), 5);
      throwsCode(() => store.compact(8), "MR_ERR_INTERNAL", /passes the snapshot at 6/);
      store.compact(7);
      assert.equal(store.firstIndex(), 7);
      assert.equal(store.term(6), 1);
      // Entries that reach back into the compacted part are skipped there, applied after it.
      await save(store, { entries: run(3, 8, 1) });
      assert.equal(store.firstIndex(), 7);
      assert.equal(store.lastIndex(), 8);
      assert.deepEqual(plain(store.entries(7, 9, MAX)), plain(run(7, 8, 1)));
      await save(store, { entries: run(2, 5, 1) }); // wholly compacted: nothing changes
      assert.equal(store.lastIndex(), 8);
    });

    test("a snapshot in save() replaces the log", async () => {
      const store = subject.create();
      await save(store, { entries: run(1, 5, 1) });
      const snapshot = snap(10, 3, { voters: [1, 2], learners: [] });
      await save(store, { snapshot, hardState: { term: 3, vote: 0, commit: 10 } });
      assert.equal(store.firstIndex(), 11);
      assert.equal(store.lastIndex(), 10);
      assert.equal(store.term(10), 3);
      throwsCode(() => store.term(9), "MR_ERR_LOG_COMPACTED");
      throwsCode(() => store.term(11), "MR_ERR_LOG_UNAVAILABLE");
      assert.deepEqual(store.entries(11, 11, MAX), []);
      assert.deepEqual(store.snapshot(), snapshot);
      assert.deepEqual(store.initialState(), {
        hardState: { term: 3, vote: 0, commit: 10 },
        confState: snapshot.meta.confState,
      });
      await save(store, { entries: run(11, 12, 3) });
      assert.deepEqual(plain(store.entries(11, 13, MAX)), plain(run(11, 12, 3)));
      throwsCode(
        () => store.save({ hardState: null, entries: [], snapshot: snap(9, 3) }),
        "MR_ERR_SNAPSHOT_OUT_OF_DATE",
      );
      // The same index again replaces the log after it too.
      await save(store, { snapshot: snap(10, 3) });
      assert.equal(store.lastIndex(), 10);
      // A snapshot with the entries that follow it, some of them already in it.
      await save(store, { snapshot: snap(20, 4), entries: run(19, 22, 4) });
      assert.equal(store.firstIndex(), 21);
      assert.equal(store.lastIndex(), 22);
      assert.deepEqual(plain(store.entries(21, 23, MAX)), plain(run(21, 22, 4)));
    });

    test("createSnapshot() needs an index after the snapshot and within the log", async () => {
      const store = subject.create();
      throwsCode(() => store.createSnapshot(0, CONF, new Uint8Array(0)), "MR_ERR_SNAPSHOT_OUT_OF_DATE");
      await save(store, { entries: [...run(1, 2, 1), ...run(3, 5, 2)] });
      throwsCode(() => store.createSnapshot(6, CONF, new Uint8Array(0)), "MR_ERR_LOG_UNAVAILABLE");
      const made = store.createSnapshot(3, CONF, dataOf(3, 2));
      assert.deepEqual(made, snap(3, 2, CONF, dataOf(3, 2)));
      assert.deepEqual(store.snapshot(), made);
      assert.equal(store.firstIndex(), 1, "a snapshot alone compacts nothing");
      throwsCode(() => store.createSnapshot(3, CONF, new Uint8Array(0)), "MR_ERR_SNAPSHOT_OUT_OF_DATE");
      throwsCode(() => store.createSnapshot(2, CONF, new Uint8Array(0)), "MR_ERR_SNAPSHOT_OUT_OF_DATE");
      assert.equal(store.createSnapshot(5, EMPTY_CONF_STATE, new Uint8Array(0)).meta.term, 2);
      assert.deepEqual(store.initialState().confState, EMPTY_CONF_STATE);
    });

    test("the hard state round-trips", async () => {
      const store = subject.create();
      const first: HardState = { term: 5, vote: 2, commit: 0 };
      await save(store, { hardState: first });
      assert.deepEqual(store.initialState().hardState, first);
      await save(store, { entries: run(1, 3, 5), hardState: { term: 5, vote: 2, commit: 3 } });
      assert.deepEqual(store.initialState().hardState, { term: 5, vote: 2, commit: 3 });
      await save(store, { entries: run(4, 4, 6) }); // no hard state: the last one stays
      assert.deepEqual(store.initialState().hardState, { term: 5, vote: 2, commit: 3 });
      await save(store, {}); // an empty update is fine
      assert.equal(store.lastIndex(), 4);
    });
  });
}

// ---- the property: LmdbRaftLog and MemoryStorage agree on any sequence of valid operations

/** One operation, as random numbers that `perform` interprets against the current log. */
interface Op {
  readonly kind: "append" | "gap" | "snapshot" | "staleSnapshot" | "createSnapshot" | "compact" | "hardState";
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly sizes: readonly number[];
  readonly withHardState: boolean;
  /** LmdbRaftLog only: go on before the save is durable (reads must see it all the same). */
  readonly noWait: boolean;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.oneof(
    { arbitrary: fc.constant("append" as const), weight: 6 },
    { arbitrary: fc.constant("gap" as const), weight: 1 },
    { arbitrary: fc.constant("snapshot" as const), weight: 1 },
    { arbitrary: fc.constant("staleSnapshot" as const), weight: 1 },
    { arbitrary: fc.constant("createSnapshot" as const), weight: 2 },
    { arbitrary: fc.constant("compact" as const), weight: 2 },
    { arbitrary: fc.constant("hardState" as const), weight: 1 },
  ),
  a: fc.nat(1000),
  b: fc.nat(1000),
  c: fc.nat(1000),
  sizes: fc.array(fc.nat(12), { minLength: 1, maxLength: 4 }),
  withHardState: fc.boolean(),
  noWait: fc.boolean(),
});

/** Turns `op` into a call that is valid for Raft (or invalid on purpose: gap, stale), given `model`. */
function plan(op: Op, model: MemoryStorage): (store: RaftLogStore) => Promise<void> | void {
  const first = model.firstIndex();
  const last = model.lastIndex();
  const hard = model.initialState().hardState;
  const snapIndex = model.snapshot().meta.index;
  /**
   * `count` entries from `start`. As in Raft, entries up to the commit index are the ones the
   * log has (a committed entry never changes); compacted ones carry the compaction point's term;
   * the rest are new, with terms rising from `baseTerm` now and then. `fresh`: all are new (they
   * follow a snapshot that replaces the log).
   */
  const entriesFrom = (start: number, count: number, baseTerm: number, fresh = false): Entry[] => {
    const out: Entry[] = [];
    let term = baseTerm;
    for (let k = 0; k < count; k++) {
      const index = start + k;
      if (!fresh && index < first) {
        out.push(entry(index, model.term(first - 1)));
        continue;
      }
      if (!fresh && index <= Math.min(hard.commit, last)) {
        const [existing] = model.entries(index, index + 1, MAX);
        out.push(existing!);
        term = existing!.term;
        continue;
      }
      if ((op.c >> k) % 4 === 0) term++;
      out.push({
        index,
        term,
        type: (op.b + k) % 6 === 0 ? "confChange" : "normal",
        data: dataOf(index, term, op.sizes[k % op.sizes.length]!),
      });
    }
    return out;
  };
  const hardStateFor = (lastAfter: number): HardState | null => {
    if (!op.withHardState) return null;
    const commit = hard.commit;
    return {
      term: hard.term + (op.b % 2),
      vote: op.a % 4,
      commit: commit + ((op.c * 7) % (lastAfter - commit + 1)),
    };
  };
  const update = (u: Partial<RaftUpdate>) => (store: RaftLogStore) =>
    store.save({ hardState: null, entries: [], snapshot: null, ...u });

  switch (op.kind) {
    case "append":
    case "gap": {
      // Never truncate the committed prefix: the new entries reach at least the commit index.
      const low = Math.max(1, first - 2, Math.min(hard.commit, last) - 3);
      let start = Math.max(low, last + 1 - (op.a % 8));
      if (op.kind === "gap") start = last + 2;
      const count = Math.max(1 + (op.b % 6), hard.commit - start + 1);
      const base = model.term(Math.max(first - 1, Math.min(start - 1, last)));
      const entries = entriesFrom(start, count, base);
      const lastAfter = start + count - 1 <= first - 1 ? last : start + count - 1;
      return update({ entries, hardState: hardStateFor(lastAfter) });
    }
    case "snapshot": {
      const index = Math.max(snapIndex, hard.commit) + (op.a % 6);
      const term = Math.max(model.term(last), hard.term) + (op.b % 2);
      const entries =
        op.sizes.length > 1
          ? entriesFrom(Math.max(1, index - 1 + (op.c % 3)), op.sizes.length, term, true)
          : [];
      const confState = { voters: [1 + (op.a % 3), 7], learners: op.c % 2 ? [9] : [] };
      return update({
        snapshot: snap(index, term, confState, dataOf(index, term, op.sizes[0]!)),
        entries,
        hardState: op.withHardState ? { term: Math.max(term, hard.term), vote: 0, commit: index } : null,
      });
    }
    case "staleSnapshot":
      return update({ snapshot: snap(snapIndex - 1, 1) });
    case "createSnapshot": {
      // As in Raft, at most the commit index (the host snapshots what it applied), or past the
      // log to check the error.
      let index = snapIndex - 1 + (op.a % Math.max(1, hard.commit - snapIndex + 3));
      if (index > hard.commit) index = last + 1;
      const confState = { voters: [1, 2 + (op.b % 3)], learners: [] };
      return (store) => {
        store.createSnapshot(index, confState, dataOf(index, 0, op.sizes[0]!));
      };
    }
    case "compact": {
      const index = first - 1 + (op.a % (snapIndex + 4 - first));
      return (store) => store.compact(index);
    }
    case "hardState":
      return update({ hardState: hardStateFor(last) ?? { ...hard, term: hard.term + 1 } });
  }
}

describe("LmdbRaftLog agrees with MemoryStorage (property)", () => {
  test("random save / createSnapshot / compact sequences give identical observable state", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 8, maxLength: 40 }), async (ops) => {
        const dir = mkdtempSync(join(tmpdir(), "metaraft-raftlog-prop-"));
        const model = new MemoryStorage(CONF);
        // Durability is the crash test's business; fsync here would only slow the search down.
        // Small caches, so that reads cross their edges (and eviction runs) all the time.
        let lmdb = openLog(dir, {
          confState: CONF,
          noSync: true,
          termCacheEntries: 8,
          recentEntriesBytesMax: 64,
        });
        try {
          const unawaited: Promise<void>[] = [];
          for (const op of ops) {
            const call = plan(op, model);
            const expected = await outcomeAsync(() => call(model));
            let actual: Outcome<undefined>;
            if (op.noWait) {
              actual = outcome(() => {
                const pending = call(lmdb);
                if (pending) unawaited.push(pending);
                return undefined;
              });
            } else {
              actual = await outcomeAsync(() => call(lmdb));
            }
            assert.deepEqual(actual, expected, `${op.kind}`);
            assert.deepEqual(observe(lmdb), observe(model), `after ${op.kind}`);
            const lo = model.firstIndex() - 1 + (op.a % (model.lastIndex() - model.firstIndex() + 3));
            const hi = lo + (op.b % 5);
            const maxBytes = op.c % 30;
            assert.deepEqual(
              outcome(() => plain(lmdb.entries(lo, hi, maxBytes))),
              outcome(() => plain(model.entries(lo, hi, maxBytes))),
              `entries(${lo}, ${hi}, ${maxBytes})`,
            );
          }
          await Promise.all(unawaited);
          await lmdb.close();
          lmdb = openLog(dir, { confState: CONF, noSync: true });
          assert.deepEqual(observe(lmdb), observe(model), "after reopening");
        } finally {
          await lmdb.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 150, includeErrorInReport: true },
    );
  });
});

// ---- LmdbRaftLog only: recovery, crashes, corruption, assertions

describe("LmdbRaftLog", () => {
  test("reopening recovers hard state, membership, first and last index, terms and snapshot exactly", async () => {
    const dir = tempDir();
    let log = openLog(dir, { confState: CONF });
    await save(log, { entries: run(1, 30, 1), hardState: { term: 1, vote: 1, commit: 10 } });
    await save(log, { entries: run(20, 25, 2), hardState: { term: 2, vote: 3, commit: 22 } });
    log.createSnapshot(12, { voters: [1, 2, 3, 5], learners: [] }, dataOf(12, 1, 100));
    log.compact(8);
    await save(log, { entries: run(26, 27, 3) });
    const before = observe(log);
    await log.close();
    log = openLog(dir, { confState: EMPTY_CONF_STATE });
    assert.deepEqual(observe(log), before);
    assert.equal(log.firstIndex(), 8);
    assert.equal(log.lastIndex(), 27);
    assert.deepEqual(log.initialState(), {
      hardState: { term: 2, vote: 3, commit: 22 },
      confState: { voters: [1, 2, 3, 5], learners: [] },
    });
    // And again after a snapshot replaced the log.
    await save(log, { snapshot: snap(40, 4), hardState: { term: 4, vote: 0, commit: 40 } });
    const afterSnapshot = observe(log);
    await log.close();
    log = openLog(dir);
    assert.deepEqual(observe(log), afterSnapshot);
    assert.deepEqual(log.snapshot(), snap(40, 4));
    await log.close();
  });

  test("a new log's membership is recorded with its first write", async () => {
    const dir = tempDir();
    let log = openLog(dir, { confState: CONF });
    await save(log, { hardState: { term: 1, vote: 0, commit: 0 } });
    await log.close();
    log = openLog(dir);
    assert.deepEqual(log.initialState().confState, CONF);
    await log.close();
  });

  test("reads between save() and its commit see the save", async () => {
    const dir = tempDir();
    let log = openLog(dir);
    const first = log.save({ hardState: null, entries: run(1, 4, 1), snapshot: null });
    const second = log.save({
      hardState: { term: 2, vote: 1, commit: 3 },
      entries: run(3, 5, 2),
      snapshot: null,
    });
    assert.equal(log.lastIndex(), 5);
    assert.deepEqual(plain(log.entries(1, 6, MAX)), plain([...run(1, 2, 1), ...run(3, 5, 2)]));
    assert.equal(log.term(4), 2);
    await Promise.all([first, second]);
    assert.deepEqual(plain(log.entries(1, 6, MAX)), plain([...run(1, 2, 1), ...run(3, 5, 2)]));
    await log.close();
    log = openLog(dir);
    assert.deepEqual(plain(log.entries(1, 6, MAX)), plain([...run(1, 2, 1), ...run(3, 5, 2)]));
    assert.deepEqual(log.initialState().hardState, { term: 2, vote: 1, commit: 3 });
    await log.close();
  });

  test("indexes past 2^32 keep their order (u64 big-endian keys)", async () => {
    const dir = tempDir();
    let log = openLog(dir);
    const base = 2 ** 32 - 3;
    await save(log, { snapshot: snap(base, 1), entries: run(base + 1, base + 6, 1) });
    assert.deepEqual(plain(log.entries(base + 1, base + 7, MAX)), plain(run(base + 1, base + 6, 1)));
    await log.close();
    log = openLog(dir);
    assert.equal(log.firstIndex(), base + 1);
    assert.equal(log.lastIndex(), base + 6);
    assert.deepEqual(plain(log.entries(base + 1, base + 7, MAX)), plain(run(base + 1, base + 6, 1)));
    const top = Number.MAX_SAFE_INTEGER - 2;
    await save(log, { snapshot: snap(top, 2), entries: run(top + 1, top + 2, 2) });
    assert.equal(log.term(top + 2), 2);
    await log.close();
    log = openLog(dir);
    assert.equal(log.lastIndex(), top + 2);
    await log.close();
  });

  test("a write that fails rejects with a code, and every later call throws", async () => {
    const env = openEnvironment(tempDir());
    const log = new LmdbRaftLog(env);
    await save(log, { entries: run(1, 2, 1) });
    await env.close(); // the environment goes away under the log
    await assert.rejects(log.save({ hardState: null, entries: run(3, 3, 1), snapshot: null }), {
      code: "MR_ERR_INTERNAL",
    });
    throwsCode(() => log.lastIndex(), "MR_ERR_INTERNAL", /failed to write/);
    throwsCode(() => log.compact(2), "MR_ERR_INTERNAL", /failed to write/);
    await assert.rejects(log.flush(), { code: "MR_ERR_INTERNAL" });
    await log.close();
  });

  test("checks what it writes: contiguous indexes, terms that never go back, commit within the log", async () => {
    const log = openLog(tempDir());
    await save(log, { entries: run(1, 3, 2), hardState: { term: 2, vote: 1, commit: 2 } });
    const before = observe(log);
    const rejects = (update: Partial<RaftUpdate>, message: RegExp) =>
      throwsCode(
        () => log.save({ hardState: null, entries: [], snapshot: null, ...update }),
        "MR_ERR_INTERNAL",
        message,
      );
    rejects({ entries: [entry(4, 2), entry(6, 2)] }, /entry 6 follows entry 4/);
    rejects({ entries: [entry(4, 3), entry(5, 2)] }, /entry 5 has term 2 < 3/);
    rejects({ entries: [entry(4, 1)] }, /entry 4 has term 1 < 2, the term of the entry before it/);
    rejects({ hardState: { term: 1, vote: 1, commit: 2 } }, /hard state term 1 < 2/);
    rejects({ hardState: { term: 2, vote: 1, commit: 4 } }, /commit 4 beyond the last index 3/);
    rejects({ entries: run(1, 1, 2) }, /commit 2 beyond the last index 1/); // truncates a committed entry
    assert.deepEqual(observe(log), before, "a rejected update changes nothing");
    await log.close();
  });

  test("a record with a bad checksum, in the wrong place, or missing is MR_ERR_LOG_CORRUPT naming it", async () => {
    const dir = tempDir();
    let log = openLog(dir);
    await save(log, { entries: run(1, 10, 1, 40), hardState: { term: 1, vote: 1, commit: 5 } });
    await log.close();

    const key = (index: number) => {
      const k = Buffer.alloc(8);
      k.writeUInt32BE(index, 4);
      return k;
    };
    const raw = open({ path: dir, maxDbs: 32 });
    const rawLog = raw.openDB<Buffer, Buffer>({ name: "raftLog", encoding: "binary", keyEncoding: "binary" });
    const good7 = rawLog.get(key(7))!;
    const bad5 = Buffer.from(rawLog.get(key(5))!);
    bad5[bad5.length - 3]! ^= 0x40; // one bit of data
    await raw.transaction(() => {
      rawLog.put(key(5), bad5);
      rawLog.put(key(8), good7); // an intact record under another index
    });
    await raw.close();

    log = openLog(dir);
    throwsCode(() => log.entries(1, 11, MAX), "MR_ERR_LOG_CORRUPT", /raftLog record 5: checksum mismatch/);
    throwsCode(() => log.term(5), "MR_ERR_LOG_CORRUPT", /raftLog record 5: checksum mismatch/);
    assert.equal(log.entries(1, 5, MAX).length, 4);
    assert.equal(log.term(7), 1);
    throwsCode(
      () => log.entries(6, 11, MAX),
      "MR_ERR_LOG_CORRUPT",
      /raftLog record 8: holds the entry of index 7/,
    );
    await log.close();

    // Damage that recovery itself finds: a hole in the log, a bad hard state, a bad last entry.
    const damage = async (db: "raftLog" | "raftState", k: Buffer, value: Buffer | null) => {
      const env = open({ path: dir, maxDbs: 32 });
      const handle = env.openDB<Buffer, Buffer>({ name: db, encoding: "binary", keyEncoding: "binary" });
      await env.transaction(() => (value ? handle.put(k, value) : handle.remove(k)));
      await env.close();
    };
    await damage("raftLog", key(6), null);
    throwsCode(() => LmdbRaftLog.open(dir), "MR_ERR_LOG_CORRUPT", /raftLog: 9 records for indexes 1 to 10/);
    await damage("raftLog", key(6), good7);
    await damage("raftState", Buffer.from("hardState"), Buffer.from("not a frame at all"));
    throwsCode(() => LmdbRaftLog.open(dir), "MR_ERR_LOG_CORRUPT", /raftState record hardState: frame length/);
    await damage("raftState", Buffer.from("hardState"), null);
    await damage("raftLog", key(10), Buffer.alloc(5));
    throwsCode(() => LmdbRaftLog.open(dir), "MR_ERR_LOG_CORRUPT", /raftLog record 10: truncated/);
  });

  test("a process killed with SIGKILL mid-append recovers every save it saw resolve", async () => {
    const dir = tempDir();
    const script = new URL("./fixtures/append-loop.js", import.meta.url);
    const child = spawn(process.execPath, [fileURLToPath(script), dir], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let durable = 0;
    let buffered = "";
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on("exit", (_code, signal) => resolve(signal)),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no progress: durable ${durable}`)), 10_000);
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("latin1");
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) durable = Math.max(durable, Number(line));
        if (durable >= 300) {
          clearTimeout(timer);
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.on("exit", () => reject(new Error("the child exited before it was killed")));
    });
    assert.equal(await exited, "SIGKILL");
    // Lines the child wrote after the ones we read were durable too; they may only raise the bar.
    for (const line of buffered.split("\n")) if (line) durable = Math.max(durable, Number(line));

    const log = openLog(dir);
    const first = log.firstIndex();
    const last = log.lastIndex();
    assert.ok(last >= durable, `last index ${last} < ${durable}, printed as durable`);
    const entries = log.entries(first, last + 1, MAX);
    assert.equal(entries.length, last - first + 1);
    entries.forEach((e, k) => {
      assert.equal(e.index, first + k);
      assert.equal(e.term, crashTerm(e.index));
      assert.equal(hex(e.data), hex(crashData(e.index)));
    });
    const { hardState, confState } = log.initialState();
    assert.ok(hardState.commit <= last, `commit ${hardState.commit} > last ${last}`);
    assert.ok(hardState.commit >= durable - 1);
    assert.deepEqual(confState, CRASH_CONF);
    assert.ok(first > 1, "the child compacted");
    assert.equal(log.term(first - 1), crashTerm(first - 1));
    assert.ok(log.snapshot().meta.index >= first - 1);
    await log.close();
  });
});

describe("environment", () => {
  test("opens every named database, and refuses too few dbsMax", async () => {
    const env = openEnvironment(tempDir());
    assert.deepEqual(Object.keys(env.dbs).length, 15);
    const tables = Object.values(env.dbs);
    await env.transaction(() => {
      tables.forEach((db, i) => {
        db.put(Buffer.from([i]), Buffer.from([i]));
      });
    });
    tables.forEach((db, i) => {
      assert.deepEqual(db.get(Buffer.from([i])), Buffer.from([i]));
    });
    await assert.rejects(
      env.transaction(() => {
        env.dbs.kv.put(Buffer.from("a"), Buffer.from("b"));
        throw new Error("half-way");
      }),
      /half-way/,
    );
    assert.equal(env.dbs.kv.get(Buffer.from("a")), undefined, "a transaction that throws writes nothing");
    await env.close();
    await env.close();
    throwsCode(() => openEnvironment(tempDir(), { dbsMax: 12 }), "MR_ERR_INVALID_ARGUMENT");
  });

  test("overlapping syncs: commits resolve and read back, also combined with noSync", async () => {
    for (const noSync of [false, true]) {
      const dir = tempDir();
      const env = openEnvironment(dir, { overlappingSync: true, noSync });
      for (let i = 0; i < 20; i++) {
        await env.transaction(() => env.dbs.kv.put(Buffer.from([i]), Buffer.from([i, i])));
      }
      await env.close();
      const reopened = openEnvironment(dir);
      assert.deepEqual(reopened.dbs.kv.get(Buffer.from([19])), Buffer.from([19, 19]));
      await reopened.close();
    }
  });
});
