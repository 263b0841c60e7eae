import { pack, unpack } from "msgpackr";
import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { decodeRecord, recordHeader } from "./record.js";
import { checkpointMin } from "./registry.js";
import { type LedgerEvent, matchesPrefix, txidHex } from "./types.js";

/**
 * The event ledger in the state tables (DESIGN.md, "The event ledger and plugins"):
 * - `events`: one record per Raft entry that produced events, keyed by its LAST txid as 16 hex
 *   digits, so keys sort as txids and the first key >= hex(t) is the record holding txid t;
 * - `checkpoints`, key `ledger`: the summary (first and last txid, events held, written,
 *   pruned), kept in the same transaction as the records. It is in a state table, not in
 *   `meta`, so that a state snapshot carries it with the records it counts.
 *
 * Pruning is decided by the leader and carried in the entry (`pruneThrough`), and every node
 * deletes the same records: replicas stay identical whatever each node's settings, and LMDB
 * needs no range delete, because at most `PRUNE_RECORDS_PER_ENTRY` records go per entry.
 */

/** Records one entry deletes at most: bounded work per batch, so pruning never stalls writes. */
export const PRUNE_RECORDS_PER_ENTRY = 16;

export const SUMMARY_KEY = "ledger";

/** The tables the ledger lives in; structurally a `StateReader` of the write path. */
export type LedgerTable = "events" | "checkpoints";

export interface LedgerReader {
  get(table: LedgerTable, key: string): Uint8Array | undefined;
  scan(
    table: LedgerTable,
    prefix: string,
    startAfter: string | undefined,
    limit: number,
  ): { readonly key: string; readonly value: Uint8Array }[];
}

export interface LedgerWrite {
  readonly table: LedgerTable;
  readonly key: string;
  readonly value: Uint8Array | null;
}

export interface LedgerSummary {
  /** The first txid with events still held (0: none held). */
  readonly firstTxid: number;
  /** The last txid with events ever written (0: none). */
  readonly lastTxid: number;
  /** Events held now. */
  readonly count: number;
  readonly records: number;
  /** Events ever written and ever pruned: the ledger's counters, identical on every node. */
  readonly written: number;
  readonly pruned: number;
  /** The last txid of the last pruned record: a reader after an older txid missed events. */
  readonly prunedThrough: number;
}

export const EMPTY_SUMMARY: LedgerSummary = Object.freeze({
  firstTxid: 0,
  lastTxid: 0,
  count: 0,
  records: 0,
  written: 0,
  pruned: 0,
  prunedThrough: 0,
});

export function readSummary(reader: LedgerReader): LedgerSummary {
  const bytes = reader.get("checkpoints", SUMMARY_KEY);
  if (!bytes) return EMPTY_SUMMARY;
  const s = unpack(bytes) as Partial<LedgerSummary> & { v?: number };
  if (s?.v !== 1) throw new MetaraftError("MR_ERR_LOG_CORRUPT", `ledger summary version ${String(s?.v)}`);
  return {
    firstTxid: s.firstTxid ?? 0,
    lastTxid: s.lastTxid ?? 0,
    count: s.count ?? 0,
    records: s.records ?? 0,
    written: s.written ?? 0,
    pruned: s.pruned ?? 0,
    prunedThrough: s.prunedThrough ?? 0,
  };
}

function encodeSummary(s: LedgerSummary): Uint8Array {
  return pack({ v: 1, ...s });
}

/**
 * The writes that append `record` (the events of one entry, if it produced any) and prune the
 * records whose last txid is at most `pruneThrough`, at most `PRUNE_RECORDS_PER_ENTRY` of them.
 * Called at apply on every node, so it must depend only on the replicated state and the entry.
 */
export function ledgerWrites(
  reader: LedgerReader,
  core: CoreSync,
  record: Uint8Array | undefined,
  pruneThrough: number,
): LedgerWrite[] {
  if (!record && !(pruneThrough > 0)) return [];
  const before = readSummary(reader);
  if (!record && pruneThrough <= before.prunedThrough) return [];
  let { firstTxid, lastTxid, count, records, written, pruned, prunedThrough } = before;
  const writes: LedgerWrite[] = [];
  if (pruneThrough > prunedThrough && records > 0) {
    const oldest = reader.scan("events", "", undefined, PRUNE_RECORDS_PER_ENTRY + 1);
    let remaining: Uint8Array | undefined;
    for (const [i, row] of oldest.entries()) {
      const head = recordHeader(row.value, core, `ledger record ${row.key}`);
      if (i >= PRUNE_RECORDS_PER_ENTRY || head.lastTxid > pruneThrough) {
        remaining = row.value;
        break;
      }
      writes.push({ table: "events", key: row.key, value: null });
      count -= head.count;
      pruned += head.count;
      records--;
      prunedThrough = head.lastTxid;
    }
    firstTxid = remaining ? recordHeader(remaining, core).firstTxid : 0;
  }
  // Applied again (a restart re-applies what the tables' last commits lost): the record is in
  // already, so the append is skipped, and entries stay idempotent like their absolute writes.
  const head = record ? recordHeader(record, core, "a new ledger record") : undefined;
  if (head && head.lastTxid <= lastTxid) record = undefined;
  if (record && head) {
    if (head.firstTxid <= lastTxid) {
      throw new MetaraftError(
        "MR_ERR_LOG_CORRUPT",
        `ledger record of txids ${head.firstTxid}-${head.lastTxid} overlaps the ledger, which ends at ${lastTxid}`,
      );
    }
    writes.push({ table: "events", key: txidHex(head.lastTxid), value: record });
    if (firstTxid === 0) firstTxid = head.firstTxid;
    lastTxid = head.lastTxid;
    count += head.count;
    written += head.count;
    records++;
  }
  writes.push({
    table: "checkpoints",
    key: SUMMARY_KEY,
    value: encodeSummary({ firstTxid, lastTxid, count, records, written, pruned, prunedThrough }),
  });
  return writes;
}

export interface RetentionLimits {
  /** Events kept at least (`events.max`). */
  readonly eventsMax: number;
  /** Past this many, events go even if an enabled listener has not checkpointed them (`events.hardMax`). */
  readonly eventsHardMax: number;
}

/**
 * The leader's pruning decision for its next entry: the last txid of the newest record that may
 * go now (0: none), looking at the oldest `PRUNE_RECORDS_PER_ENTRY` records only. The newest
 * `eventsMax` events stay; of the older ones, a record goes when every enabled listener has
 * checkpointed past it, or when the ledger holds more than `eventsHardMax`.
 */
export function planPrune(reader: LedgerReader, core: CoreSync, limits: RetentionLimits): number {
  const summary = readSummary(reader);
  if (summary.count <= limits.eventsMax) return 0;
  const keep = checkpointMin(reader);
  let count = summary.count;
  let through = 0;
  for (const row of reader.scan("events", "", undefined, PRUNE_RECORDS_PER_ENTRY)) {
    const head = recordHeader(row.value, core, `ledger record ${row.key}`);
    if (count - head.count < limits.eventsMax) break;
    if (head.lastTxid > keep && count <= limits.eventsHardMax) break;
    through = head.lastTxid;
    count -= head.count;
  }
  return through;
}

/** Bytes one read returns at most (besides finishing the record it is in). */
export const READ_BYTES_MAX = 4 * 1024 * 1024;

export interface ReadOptions {
  /** Only events under this path prefix (`volume/bucket/key`); "" for all. */
  readonly prefix?: string;
  /** Stop before this txid's events: reads up to the txid applied when the read began. */
  readonly throughTxid?: number;
  /** Record bytes one read decodes at most (besides finishing the record it is in); READ_BYTES_MAX by default. */
  readonly bytesMax?: number;
  /**
   * Stop at the first txid boundary past `limit` events, even inside a record: a batch's record
   * may hold thousands of events, and a reader with a bounded buffer (a watch) must not take
   * them all at once. Without it a read finishes the record it is in.
   */
  readonly withinRecord?: boolean;
}

/**
 * Events after `afterTxid`, in order, at most about `limit` (a txid's events are never split
 * across reads). `missed` says which txids' events were pruned before this reader saw them.
 * `scannedThrough` is the txid the read covered, matched or not: the next read goes after it.
 */
export function readLedger(
  reader: LedgerReader,
  core: CoreSync,
  afterTxid: number,
  limit: number,
  options: ReadOptions = {},
): {
  events: LedgerEvent[];
  firstTxid: number;
  lastTxid: number;
  scannedThrough: number;
  missed?: { fromTxid: number; toTxid: number };
} {
  const summary = readSummary(reader);
  const prefix = options.prefix ?? "";
  const through = Math.min(options.throughTxid ?? Number.POSITIVE_INFINITY, summary.lastTxid);
  const events: LedgerEvent[] = [];
  const missed =
    summary.prunedThrough > afterTxid
      ? { fromTxid: afterTxid + 1, toTxid: summary.prunedThrough }
      : undefined;
  let scannedThrough = Math.max(afterTxid, missed?.toTxid ?? 0);
  let bytes = 0;
  const bytesMax = options.bytesMax ?? READ_BYTES_MAX;
  // Keys are last txids: the first record holding txid `after + 1` has key >= hex(after + 1).
  let startAfter: string | undefined = scannedThrough > 0 ? txidHex(scannedThrough) : undefined;
  const page = 64;
  // Whether the read reached `through` (or the end), rather than stopping at a bound.
  let reached = scannedThrough >= through;
  let full = false;
  while (!reached) {
    const rows = reader.scan("events", "", startAfter, page);
    for (const row of rows) {
      const decoded = decodeRecord(row.value, core, `ledger record ${row.key}`);
      let cut = false;
      let previous = scannedThrough;
      for (const event of decoded) {
        if (event.txid <= scannedThrough) continue;
        if (event.txid > through) {
          cut = true;
          break;
        }
        if (options.withinRecord && event.txid > previous && events.length >= limit) {
          // Every txid before this one is read whole; the next read resumes inside the record.
          scannedThrough = event.txid - 1;
          full = true;
          break;
        }
        previous = event.txid;
        if (matchesPrefix(event, prefix)) events.push(event);
      }
      if (full) break;
      if (cut) {
        reached = true;
        break;
      }
      scannedThrough = decoded[decoded.length - 1]!.txid;
      bytes += row.value.length;
      startAfter = row.key;
      if (events.length >= limit || bytes >= bytesMax) {
        full = true;
        break;
      }
    }
    if (full) break;
    if (rows.length < page) reached = true;
  }
  if (reached) scannedThrough = Math.max(scannedThrough, through);
  return {
    events,
    firstTxid: summary.firstTxid,
    lastTxid: summary.lastTxid,
    scannedThrough,
    ...(missed ? { missed } : {}),
  };
}
