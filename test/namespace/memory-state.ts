import assert from "node:assert/strict";
import { MetaraftError } from "../../src/errors.js";
import type {
  Execution,
  Request,
  ScanEntry,
  StateReader,
  StateTable,
  Write,
} from "../../src/execution/types.js";
import { namespaceSpecsByOp } from "../../src/namespace/index.js";

/**
 * The reference `StateReader` for namespace tests: one sorted map per table, ordered by the
 * keys' UTF-8 bytes as LMDB orders them (not by JS string order, which differs for characters
 * outside the BMP), and `apply` to run sequences of requests.
 */

interface Stored {
  readonly bytes: Buffer;
  readonly value: Uint8Array;
}

export class MemoryState implements StateReader {
  readonly #tables = new Map<StateTable, Map<string, Stored>>();

  get(table: StateTable, key: string): Uint8Array | undefined {
    return this.#tables.get(table)?.get(key)?.value;
  }

  scan(table: StateTable, prefix: string, startAfter: string | undefined, limit: number): ScanEntry[] {
    assert.ok(Number.isInteger(limit) && limit >= 0, `scan limit ${limit}`);
    const prefixBytes = Buffer.from(prefix, "utf8");
    const after = startAfter === undefined ? undefined : Buffer.from(startAfter, "utf8");
    const found: [string, Stored][] = [];
    for (const entry of this.#tables.get(table) ?? []) {
      const bytes = entry[1].bytes;
      if (bytes.length < prefixBytes.length || !bytes.subarray(0, prefixBytes.length).equals(prefixBytes))
        continue;
      if (after !== undefined && Buffer.compare(bytes, after) <= 0) continue;
      found.push(entry);
    }
    found.sort(([, a], [, b]) => Buffer.compare(a.bytes, b.bytes));
    return found.slice(0, limit).map(([key, stored]) => ({ key, value: stored.value }));
  }

  apply(execution: Execution): void {
    for (const write of execution.writes) this.write(write);
  }

  write({ table, key, value }: Write): void {
    let rows = this.#tables.get(table);
    if (rows === undefined) this.#tables.set(table, (rows = new Map()));
    if (value === null) rows.delete(key);
    else rows.set(key, { bytes: Buffer.from(key, "utf8"), value: Uint8Array.from(value) });
  }

  /** Every entry of a table, in key order. */
  entries(table: StateTable): ScanEntry[] {
    return this.scan(table, "", undefined, Number.MAX_SAFE_INTEGER);
  }

  /** A comparable picture of all tables, to show that a refused request wrote nothing. */
  snapshot(): Record<string, [string, string][]> {
    const picture: Record<string, [string, string][]> = {};
    for (const table of [...this.#tables.keys()].sort()) {
      picture[table] = this.entries(table).map((e) => [e.key, Buffer.from(e.value).toString("hex")]);
    }
    return picture;
  }
}

/**
 * Drives a `MemoryState` as the executor would: one txid per request, the time the test sets,
 * validate then execute, and the writes applied before the next request.
 */
export class Namespace {
  readonly state = new MemoryState();
  txid = 0;
  time = 1_700_000_000_000;
  /** Every execution, in order, for tests that compare bytes. */
  readonly log: Execution[] = [];

  run(raw: Request): Execution {
    const spec = namespaceSpecsByOp.get(raw.op);
    if (spec === undefined) throw new MetaraftError("MR_ERR_UNKNOWN_OP", raw.op);
    this.txid += 1;
    const execution = spec.execute(spec.validate(raw), {
      txid: this.txid,
      time: this.time,
      reader: this.state,
    });
    if (spec.kind === "read") assert.equal(execution.writes.length, 0, `${raw.op} is a read but wrote`);
    this.state.apply(execution);
    this.log.push(execution);
    return execution;
  }

  /** The reply of a request that must succeed. */
  reply(raw: Request): Record<string, unknown> {
    return this.run(raw).reply as Record<string, unknown>;
  }

  /** Runs a request that must fail with `code`, and checks that it changed nothing. */
  fails(raw: Request, code: string): MetaraftError {
    const before = this.state.snapshot();
    let caught: unknown;
    try {
      this.run(raw);
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof MetaraftError, `${raw.op} should fail with ${code}, got ${String(caught)}`);
    assert.equal(caught.code, code, caught.message);
    assert.deepEqual(this.state.snapshot(), before, `${raw.op} failed but changed the state`);
    return caught;
  }
}
