import { FRAME_HEADER_BYTES, FRAME_VERSION, tsCore } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type {
  ConfState,
  Entry,
  EntryType,
  HardState,
  NodeId,
  Snapshot,
  SnapshotMeta,
} from "../raft/types.js";

/**
 * The on-disk records of the Raft log storage.
 *
 * Keys. `raftLog`: the entry's index as u64 big-endian (8 bytes), so LMDB's byte order is index
 * order. `raftState`: the fixed ASCII keys below.
 *
 * Values. Every value is a frame (docs/core-formats.md, section 2):
 *
 *   u32 length | u8 version (1) | u32 crc32c(payload) | payload          (header little-endian)
 *
 * Payloads (integers little-endian; a u64 holds a number below 2^53):
 *
 *   raftLog[index]             entry:  u64 index | u64 term | u8 type | data
 *                                      (type 0 = normal, 1 = confChange; data is the rest)
 *   raftState["hardState"]     u64 term | u64 vote | u64 commit
 *   raftState["logStart"]      u64 index | u64 term      the entry just before the first one kept
 *                                                        (etcd's dummy entry): compaction point
 *   raftState["snapshotMeta"]  u64 index | u64 term | u32 dataBytes | u32 crc32c(data)
 *                              | u32 voterCount | u32 learnerCount | u64 × voters | u64 × learners
 *   raftState["snapshotData"]  the snapshot's data, as is
 *
 * The entry repeats its index, and the snapshot meta carries its data's length and checksum, so
 * that a record that is intact but in the wrong place (under another key, or a meta beside
 * another snapshot's data) is caught like a corrupt one.
 */

export const RAFT_STATE_KEYS = {
  hardState: Buffer.from("hardState"),
  logStart: Buffer.from("logStart"),
  snapshotMeta: Buffer.from("snapshotMeta"),
  snapshotData: Buffer.from("snapshotData"),
  /** The cluster identity recorded once, at bootstrap (identity.ts). */
  identity: Buffer.from("identity"),
} as const;

export type RaftStateRecord = keyof typeof RAFT_STATE_KEYS;

export const ENTRY_HEADER_BYTES = 17;
const HARD_STATE_BYTES = 24;
const LOG_START_BYTES = 16;
const SNAPSHOT_META_FIXED_BYTES = 32;
const TWO_POW_32 = 2 ** 32;
/** The high half of a u64 below 2^53. */
const U64_HIGH_MAX = 2 ** 21 - 1;

const ENTRY_TYPES: readonly EntryType[] = ["normal", "confChange"];

export function corrupt(where: string, problem: string): MetaraftError {
  return new MetaraftError("MR_ERR_LOG_CORRUPT", `${where}: ${problem}`);
}

export const logWhere = (index: number): string => `raftLog record ${index}`;
export const stateWhere = (record: RaftStateRecord): string => `raftState record ${record}`;

// ---- keys

export function indexKey(index: number): Buffer {
  assertU64(index, "log index");
  const key = Buffer.allocUnsafe(8);
  key.writeUInt32BE(Math.floor(index / TWO_POW_32), 0);
  key.writeUInt32BE(index >>> 0, 4);
  return key;
}

/** The index a `raftLog` key stands for; `null` if the key is not one we could have written. */
export function keyIndex(key: Uint8Array): number | null {
  if (key.length !== 8) return null;
  const view = new DataView(key.buffer, key.byteOffset, 8);
  const high = view.getUint32(0);
  if (high > U64_HIGH_MAX) return null;
  return high * TWO_POW_32 + view.getUint32(4);
}

// ---- frames

/** A frame with room for `payloadBytes`, to be filled at FRAME_HEADER_BYTES and sealed. */
function frame(payloadBytes: number): { bytes: Buffer; view: DataView } {
  const bytes = Buffer.alloc(FRAME_HEADER_BYTES + payloadBytes);
  return { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.length) };
}

function seal(bytes: Buffer, view: DataView): Buffer {
  const payload = bytes.subarray(FRAME_HEADER_BYTES);
  view.setUint32(0, payload.length, true);
  bytes[4] = FRAME_VERSION;
  view.setUint32(5, tsCore.crc32c(payload), true);
  return bytes;
}

/** Checks a stored frame and returns its payload (a view of `value`). */
function openFrame(value: Uint8Array, where: string): { payload: Uint8Array; view: DataView; crc: number } {
  if (value.length < FRAME_HEADER_BYTES) throw corrupt(where, `truncated (${value.length} bytes)`);
  const view = new DataView(value.buffer, value.byteOffset, value.length);
  const length = view.getUint32(0, true);
  if (length !== value.length - FRAME_HEADER_BYTES) {
    throw corrupt(where, `frame length ${length} but ${value.length - FRAME_HEADER_BYTES} payload bytes`);
  }
  if (value[4] !== FRAME_VERSION) throw corrupt(where, `unsupported frame version ${value[4]}`);
  const payload = new Uint8Array(value.buffer, value.byteOffset + FRAME_HEADER_BYTES, length);
  const crc = view.getUint32(5, true);
  if (tsCore.crc32c(payload) !== crc) throw corrupt(where, "checksum mismatch");
  return { payload, view: new DataView(payload.buffer, payload.byteOffset, payload.length), crc };
}

// ---- integers

function assertU64(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new MetaraftError("MR_ERR_INTERNAL", `${what} ${value} is not an integer in [0, 2^53)`);
  }
}

function putU64(view: DataView, at: number, value: number, what: string): void {
  assertU64(value, what);
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / TWO_POW_32), true);
}

function getU64(view: DataView, at: number, where: string): number {
  const high = view.getUint32(at + 4, true);
  if (high > U64_HIGH_MAX) throw corrupt(where, `integer at payload offset ${at} is not below 2^53`);
  return high * TWO_POW_32 + view.getUint32(at, true);
}

function needBytes(payload: Uint8Array, bytes: number, where: string, exact: boolean): void {
  if (exact ? payload.length !== bytes : payload.length < bytes) {
    throw corrupt(where, `payload of ${payload.length} bytes, expected ${exact ? "" : "at least "}${bytes}`);
  }
}

// ---- entries

export function encodeEntry(entry: Entry): Buffer {
  const { bytes, view } = frame(ENTRY_HEADER_BYTES + entry.data.length);
  const p = FRAME_HEADER_BYTES;
  putU64(view, p, entry.index, "entry index");
  putU64(view, p + 8, entry.term, "entry term");
  const type = ENTRY_TYPES.indexOf(entry.type);
  if (type < 0)
    throw new MetaraftError("MR_ERR_INTERNAL", `entry ${entry.index}: unknown type ${entry.type}`);
  bytes[p + 16] = type;
  bytes.set(entry.data, p + ENTRY_HEADER_BYTES);
  return seal(bytes, view);
}

/** Decodes and checks the record stored under `index`; `data` is a view of `value`. */
export function decodeEntry(value: Uint8Array, index: number): Entry {
  const where = logWhere(index);
  const { payload, view } = openFrame(value, where);
  needBytes(payload, ENTRY_HEADER_BYTES, where, false);
  const stored = getU64(view, 0, where);
  if (stored !== index) throw corrupt(where, `holds the entry of index ${stored}`);
  const term = getU64(view, 8, where);
  const type = ENTRY_TYPES[payload[16]!];
  if (type === undefined) throw corrupt(where, `unknown entry type ${payload[16]}`);
  const data = new Uint8Array(
    payload.buffer,
    payload.byteOffset + ENTRY_HEADER_BYTES,
    payload.length - ENTRY_HEADER_BYTES,
  );
  return { term, index, type, data };
}

// ---- raft state

export function encodeHardState(state: HardState): Buffer {
  const { bytes, view } = frame(HARD_STATE_BYTES);
  putU64(view, FRAME_HEADER_BYTES, state.term, "hard state term");
  putU64(view, FRAME_HEADER_BYTES + 8, state.vote, "hard state vote");
  putU64(view, FRAME_HEADER_BYTES + 16, state.commit, "hard state commit");
  return seal(bytes, view);
}

export function decodeHardState(value: Uint8Array): HardState {
  const where = stateWhere("hardState");
  const { payload, view } = openFrame(value, where);
  needBytes(payload, HARD_STATE_BYTES, where, true);
  return { term: getU64(view, 0, where), vote: getU64(view, 8, where), commit: getU64(view, 16, where) };
}

export interface LogStart {
  readonly index: number;
  readonly term: number;
}

export function encodeLogStart(start: LogStart): Buffer {
  const { bytes, view } = frame(LOG_START_BYTES);
  putU64(view, FRAME_HEADER_BYTES, start.index, "log start index");
  putU64(view, FRAME_HEADER_BYTES + 8, start.term, "log start term");
  return seal(bytes, view);
}

export function decodeLogStart(value: Uint8Array): LogStart {
  const where = stateWhere("logStart");
  const { payload, view } = openFrame(value, where);
  needBytes(payload, LOG_START_BYTES, where, true);
  return { index: getU64(view, 0, where), term: getU64(view, 8, where) };
}

/** The two records of a snapshot, written together: its meta and its data. */
export function encodeSnapshot(snapshot: Snapshot): { meta: Buffer; data: Buffer } {
  const data = frame(snapshot.data.length);
  data.bytes.set(snapshot.data, FRAME_HEADER_BYTES);
  seal(data.bytes, data.view);
  const { index, term, confState } = snapshot.meta;
  const { voters, learners } = confState;
  const { bytes, view } = frame(SNAPSHOT_META_FIXED_BYTES + 8 * (voters.length + learners.length));
  let p = FRAME_HEADER_BYTES;
  putU64(view, p, index, "snapshot index");
  putU64(view, p + 8, term, "snapshot term");
  view.setUint32(p + 16, snapshot.data.length, true);
  view.setUint32(p + 20, data.view.getUint32(5, true), true);
  view.setUint32(p + 24, voters.length, true);
  view.setUint32(p + 28, learners.length, true);
  p += SNAPSHOT_META_FIXED_BYTES;
  for (const id of [...voters, ...learners]) {
    putU64(view, p, id, "node id");
    p += 8;
  }
  return { meta: seal(bytes, view), data: data.bytes };
}

export interface StoredSnapshotMeta {
  readonly meta: SnapshotMeta;
  readonly dataBytes: number;
  readonly dataCrc: number;
}

export function decodeSnapshotMeta(value: Uint8Array): StoredSnapshotMeta {
  const where = stateWhere("snapshotMeta");
  const { payload, view } = openFrame(value, where);
  needBytes(payload, SNAPSHOT_META_FIXED_BYTES, where, false);
  const voterCount = view.getUint32(24, true);
  const learnerCount = view.getUint32(28, true);
  needBytes(payload, SNAPSHOT_META_FIXED_BYTES + 8 * (voterCount + learnerCount), where, true);
  const ids = (from: number, count: number): NodeId[] => {
    const out: NodeId[] = [];
    for (let i = 0; i < count; i++) out.push(getU64(view, from + 8 * i, where));
    return out;
  };
  const confState: ConfState = {
    voters: ids(SNAPSHOT_META_FIXED_BYTES, voterCount),
    learners: ids(SNAPSHOT_META_FIXED_BYTES + 8 * voterCount, learnerCount),
  };
  return {
    meta: { index: getU64(view, 0, where), term: getU64(view, 8, where), confState },
    dataBytes: view.getUint32(16, true),
    dataCrc: view.getUint32(20, true),
  };
}

/** The snapshot's data, checked against its own frame and against the meta stored beside it. */
export function decodeSnapshotData(value: Uint8Array, stored: StoredSnapshotMeta): Uint8Array {
  const where = stateWhere("snapshotData");
  const { payload, crc } = openFrame(value, where);
  if (payload.length !== stored.dataBytes) {
    throw corrupt(where, `${payload.length} bytes, but snapshotMeta says ${stored.dataBytes}`);
  }
  // The frame's checksum is the data's: a different one means the data of another snapshot.
  if (crc !== stored.dataCrc) throw corrupt(where, "does not belong to snapshotMeta");
  return payload;
}
