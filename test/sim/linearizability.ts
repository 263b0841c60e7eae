/**
 * Linearizability checker for the client histories of the deterministic Raft simulator.
 *
 * The core (`checkModel`) is the Wing–Gong search with Lowe's improvements, laid out the way
 * porcupine does it: the history becomes a list of call and return events sorted by time, kept as a
 * doubly linked list (dancing links); the search walks the list from the front, tries to linearize
 * each call it meets before the first return, removes ("lifts") the linearized op from the list,
 * and backtracks ("unlifts") when it reaches the return of an op it has not linearized. A cache of
 * configurations (set of linearized ops as a bitset, model state as a string) prunes the search:
 * reaching one twice can never succeed the second time when it did not the first. On top of that:
 * - reads (ops the model marks read-only) go as soon as they fit, with no alternatives tried;
 * - the bitset kept per configuration covers only the concurrency window, not the whole history;
 * - pending ops are tried after completed ones, consecutive pending ops only when the second
 *   depends on the first, and a configuration is skipped when one with fewer pending ops (same
 *   completed ops, same state) has failed. See `checkModel`.
 *
 * Real time: op A precedes B iff `A.ret < B.call`. Intervals that only touch (`A.ret === B.call`)
 * count as concurrent, the permissive choice for a simulator whose events can share a tick.
 *
 * Pending ops (`ret: null`) never returned: they may take effect at any time after their call, or
 * never. The model is told an op is pending by `op.ret === null` and must then accept any output.
 *
 * `checkKv` splits a key-value history by key (a history of independent registers is linearizable
 * iff each per-key sub-history is: P-compositionality), simplifies each key's pending writes (drops
 * those that cannot matter, treats those surely observed as completed), looks for an op that fits
 * nowhere without searching, and otherwise searches with `checkModel`. On a violation it shrinks
 * the key's ops to a small core and explains it.
 */

/** The default bound on search steps per independent sub-history. */
export const DEFAULT_STEPS_MAX = 5_000_000;

/** The total work (search steps, plus a few units per op examined) spent shrinking a violation to a small core. */
export const MINIMIZE_STEPS_MAX = 2_000_000;

/**
 * Bound on the words of linearized-set bitsets the cache may hold (64 Mi words = 256 MiB); a search
 * that would need more answers "unknown" instead of exhausting memory.
 */
export const CACHE_WORDS_MAX = 64 * 1024 * 1024;

export interface KvOp {
  readonly client: number;
  readonly kind: "put" | "get" | "cas";
  readonly key: string;
  /** The value written by put, or by cas when it succeeds. */
  readonly value?: string;
  /** What cas compares against; `null` means the key is absent. */
  readonly expected?: string | null;
  readonly call: number;
  /** `null`: the operation never returned, so it may or may not have taken effect. */
  readonly ret: number | null;
  /** get: the value read (`null` when absent); cas: whether it succeeded; put: ignored. */
  readonly output?: string | null | boolean;
}

export type LinearizabilityResult =
  | { kind: "ok" }
  | {
      kind: "violation";
      key: string;
      explanation: string;
      /**
       * A small subset of the key's ops that on its own admits no linearization, shrunk greedily by
       * removals that cannot create a violation, so its violation implies the whole history's (all
       * the key's ops but pending gets when `minimize: false`; partly shrunk when the shrinking
       * budget runs out).
       */
      ops: KvOp[];
      /** Every operation on the key, in history order. */
      keyOps: KvOp[];
    }
  | { kind: "unknown"; key: string };

/** The minimum an operation needs for the generic checker: when it was called and when it returned. */
export interface TimedOp {
  readonly call: number;
  /** `null`: never returned. */
  readonly ret: number | null;
}

/** A sequential specification. */
export interface Model<S, Op> {
  init(): S;
  /**
   * Applies `op` to `state`. `ok` says whether the op's recorded output is what the specification
   * gives in `state`; for a pending op (`ret === null`) the output is unknown, so it should be `true`.
   */
  step(state: S, op: Op): { ok: boolean; state: S };
  /** A string equal for two states iff they are equal, for the cache of explored configurations. */
  key(state: S): string;
  /**
   * Optional: true when `step(s, op)` leaves the state unchanged in every `s` where it is ok (a
   * read). The search then linearizes such an op as soon as it can go, without trying alternatives:
   * if any linearization exists, one exists with the read moved to the earliest point where it fits.
   */
  readOnly?(op: Op): boolean;
}

export type ModelResult =
  /** `linearization`: indices into `ops` in linearization order; pending ops that took no effect are left out. */
  | { kind: "ok"; linearization: number[]; steps: number }
  /** `longestPrefix`: indices into `ops` of the longest linearizable prefix the search found. */
  | { kind: "violation"; longestPrefix: number[]; steps: number }
  | { kind: "unknown"; longestPrefix: number[]; steps: number };

export interface CheckOptions {
  /** Bound on search steps per independent sub-history; default `DEFAULT_STEPS_MAX`. */
  readonly stepsMax?: number;
}

export interface KvCheckOptions extends CheckOptions {
  /** Shrink a violation to a small core of operations (default true). */
  readonly minimize?: boolean;
}

/**
 * Checks that `ops` is linearizable with respect to `model`. Deterministic; stops with
 * `{ kind: "unknown" }` after `stepsMax` steps (one step per candidate op the search tries, and
 * one per op it takes back).
 */
export function checkModel<S, Op extends TimedOp>(
  ops: readonly Op[],
  model: Model<S, Op>,
  options: CheckOptions = {},
): ModelResult {
  const stepsMax = options.stepsMax ?? DEFAULT_STEPS_MAX;
  ops.forEach((op, i) => {
    if (typeof op.call !== "number" || !Number.isFinite(op.call)) {
      throw new RangeError(`op ${i}: call must be a finite number, got ${String(op.call)}`);
    }
    if (op.ret !== null && (typeof op.ret !== "number" || !Number.isFinite(op.ret) || op.ret < op.call)) {
      throw new RangeError(`op ${i}: ret must be null or a finite number >= call, got ${String(op.ret)}`);
    }
  });
  const isReadOnly = (op: Op) => model.readOnly?.(op) === true;

  // Internal ids: completed ops first, by call time, then pending ones by call time. A pending read
  // neither constrains nor changes anything, so it is left out. The completed ops below the first
  // one not yet linearized (`low`) are all linearized, so a configuration stores `low` plus the
  // bits from `low` to the highest linearized completed op (`high`): about the width of the
  // concurrency window rather than the length of the history.
  const byCall = (a: number, b: number) => {
    const x = ops[a]!;
    const y = ops[b]!;
    return x.call - y.call || (x.ret ?? 0) - (y.ret ?? 0) || a - b;
  };
  const keys = Array.from(ops.keys());
  const order = [
    ...keys.filter((i) => ops[i]!.ret !== null).sort(byCall),
    ...keys.filter((i) => ops[i]!.ret === null && !isReadOnly(ops[i]!)).sort(byCall),
  ];
  const internalOps = order.map((i) => ops[i]!);
  const n = order.length;
  let completed = 0;
  while (completed < n && internalOps[completed]!.ret !== null) completed++;
  const pendingCount = n - completed;
  const readOnly = Uint8Array.from(internalOps, (op, k) => (k < completed && isReadOnly(op) ? 1 : 0));
  const anyReadOnly = readOnly.includes(1);

  // Completed ops live in a list of call and return events: node 2k is the call of op k, node
  // 2k+1 its return; node 2 * completed heads the list. Sorted by time, calls before returns at
  // equal times, then by id. Pending ops stay out of it: they may go at any point after their call,
  // and are tried after the completed ops there (their return being at +infinity).
  //
  // Pending ops make the search space explode, as each may or may not have happened at each point.
  // Two rules tame it. (1) Only "canonical" linearizations are searched: a pending op q may follow
  // a pending op p directly only if q depends on p, that is, q from the state before p does not
  // give the same outcome as q after p. Any linearization can be made canonical by dropping such
  // a p (pending ops may never take effect), so nothing is lost. (2) A configuration is not worth
  // exploring when one with the same completed ops and state, but only a subset of its pending
  // ops, has failed (with no restriction on its next op): whatever works with more pending ops
  // linearized works with fewer, the others never taking effect. Since pending ops are tried
  // last, the subsets tend to fail first.
  const time = (e: number) => {
    const op = internalOps[e >>> 1]!;
    return (e & 1) === 0 ? op.call : op.ret!;
  };
  const events = Int32Array.from({ length: 2 * completed }, (_, e) => e).sort(
    (a, b) => time(a) - time(b) || (a & 1) - (b & 1) || (a >>> 1) - (b >>> 1),
  );
  const head = 2 * completed;
  const next = new Int32Array(2 * completed + 1).fill(-1);
  const prev = new Int32Array(2 * completed + 1).fill(-1);
  let last = head;
  for (const e of events) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  // Removes op's call `e` and its return `e + 1` from the list. A call is never last (its return
  // follows it), so only the return may lack a successor.
  const lift = (e: number) => {
    next[prev[e]!] = next[e]!;
    prev[next[e]!] = prev[e]!;
    const m = e + 1;
    next[prev[m]!] = next[m]!;
    if (next[m] !== -1) prev[next[m]!] = prev[m]!;
  };
  // Undoes `lift(e)`; lifts and unlifts nest, so the removed nodes' own links are still valid.
  const unlift = (e: number) => {
    const m = e + 1;
    next[prev[m]!] = m;
    if (next[m] !== -1) prev[next[m]!] = m;
    next[prev[e]!] = e;
    prev[next[e]!] = e;
  };

  // The linearized set: completed ops in `done`, pending ones in `pend`.
  const done = new Uint32Array((completed + 31) >>> 5);
  const pend = new Uint32Array((pendingCount + 31) >>> 5);
  const isDone = (k: number) => (done[k >>> 5]! & (1 << (k & 31))) !== 0;
  const isPend = (j: number) => (pend[j >>> 5]! & (1 << (j & 31))) !== 0;
  let low = 0;
  let high = -1;
  // Zobrist hashing of the completed part: two independent 32-bit hashes, updated by XOR.
  const zobristA = new Int32Array(completed);
  const zobristB = new Int32Array(completed);
  const random = splitmix32(0x9e3779b9);
  for (let k = 0; k < completed; k++) {
    zobristA[k] = random();
    zobristB[k] = random();
  }
  let hashA = 0;
  let hashB = 0;
  const cache = new ConfigurationCache(pend.length);

  const stackOp = new Int32Array(n);
  const stackLow = new Int32Array(n);
  const stackHigh = new Int32Array(n);
  const stackEntry = new Int32Array(n);
  const stackForced = new Uint8Array(n);
  const stackDeadline = new Float64Array(n);
  const stackState: (S | undefined)[] = new Array(n);
  let depth = 0;
  let longest: number[] = [];
  let state = model.init();
  let steps = 0;
  // The scan of the current configuration's candidates: completed calls in the list before its
  // first return (`entry`), then pending ops called by that return's time (`deadline`), from `pj`.
  let entry = -1;
  let deadline = Number.NEGATIVE_INFINITY;
  let pj = 0;
  const path = () => Array.from(stackOp.subarray(0, depth), (k) => order[k]!);

  /** Linearizes op `k` next, unless the configuration it leads to needs no exploring. */
  const push = (k: number, after: S, forced: boolean): boolean => {
    // After a pending op, what may come next depends on the state before it: part of the key.
    const context = k < completed ? -1 : k;
    const contextKey = k < completed ? "" : model.key(state);
    const oldLow = low;
    const oldHigh = high;
    let newA = hashA;
    let newB = hashB;
    if (k < completed) {
      done[k >>> 5]! |= 1 << (k & 31);
      if (k === low) {
        do low++;
        while (low < completed && isDone(low));
      }
      if (k > high) high = k;
      newA ^= zobristA[k]!;
      newB ^= zobristB[k]!;
    } else {
      const j = k - completed;
      pend[j >>> 5]! |= 1 << (j & 31);
    }
    const start = low >>> 5;
    const length = high >= low ? (high >>> 5) - start + 1 : 0;
    const cached = cache.visit(
      newA,
      newB,
      model.key(after),
      low,
      done,
      start,
      length,
      pend,
      context,
      contextKey,
    );
    if (cached !== -1) {
      stackOp[depth] = k;
      stackLow[depth] = oldLow;
      stackHigh[depth] = oldHigh;
      stackEntry[depth] = cached;
      stackForced[depth] = forced ? 1 : 0;
      stackDeadline[depth] = deadline;
      stackState[depth] = state;
      depth++;
      state = after;
      hashA = newA;
      hashB = newB;
      if (k < completed) lift(2 * k);
      return true;
    }
    clearBit(k);
    low = oldLow;
    high = oldHigh;
    return false;
  };
  const clearBit = (k: number) => {
    if (k < completed) done[k >>> 5]! &= ~(1 << (k & 31));
    else pend[(k - completed) >>> 5]! &= ~(1 << ((k - completed) & 31));
  };
  /**
   * The current configuration failed: undoes linearizations, recording each configuration left
   * as failed, until one that was a choice, and sets the scan to the candidate after it. False
   * when there is none left: no linearization exists. An op linearized as forced leaves nothing
   * to try instead, so its failure is its parent's too.
   */
  const backtrack = (): boolean => {
    if (depth > longest.length) longest = path();
    while (depth > 0) {
      steps++;
      depth--;
      const k = stackOp[depth]!;
      cache.fail(stackEntry[depth]!);
      state = stackState[depth]!;
      stackState[depth] = undefined;
      clearBit(k);
      low = stackLow[depth]!;
      high = stackHigh[depth]!;
      if (k < completed) {
        hashA ^= zobristA[k]!;
        hashB ^= zobristB[k]!;
        unlift(2 * k);
      }
      if (stackForced[depth] === 0) {
        if (k < completed) {
          entry = next[2 * k]!;
        } else {
          entry = -1;
          deadline = stackDeadline[depth]!;
          pj = k - completed + 1;
        }
        return true;
      }
    }
    return false;
  };
  const unknown = (): ModelResult => {
    if (depth > longest.length) longest = path();
    return { kind: "unknown", longestPrefix: longest, steps };
  };

  let arrived = true;
  for (;;) {
    if (steps > stepsMax || cache.words > CACHE_WORDS_MAX) return unknown();
    if (arrived) {
      // A new configuration. Done when every completed op is; otherwise a read that can go now
      // goes now, with no alternatives.
      arrived = false;
      entry = next[head]!;
      if (entry === -1) return { kind: "ok", linearization: path(), steps };
      if (anyReadOnly) {
        let forced = 0; // 1: linearized one; -1: its configuration needs no exploring
        for (let e = entry; (e & 1) === 0; e = next[e]!) {
          steps++;
          const k = e >>> 1;
          if (readOnly[k] === 0) continue;
          const result = model.step(state, internalOps[k]!);
          if (!result.ok) continue;
          forced = push(k, result.state, true) ? 1 : -1;
          break;
        }
        if (forced === 1) {
          arrived = true;
          continue;
        }
        if (forced === -1) {
          if (!backtrack()) return { kind: "violation", longestPrefix: longest, steps };
          continue;
        }
      }
    }
    if (entry !== -1) {
      // Completed candidates, in list order; reads were tried on arrival, and none could go.
      steps++;
      const k = entry >>> 1;
      if ((entry & 1) === 1) {
        deadline = internalOps[k]!.ret!;
        pj = 0;
        entry = -1;
      } else {
        if (readOnly[k] === 0) {
          const result = model.step(state, internalOps[k]!);
          if (result.ok && push(k, result.state, false)) {
            arrived = true;
            continue;
          }
        }
        entry = next[entry]!;
      }
      continue;
    }
    // Pending candidates: those called by the first return; right after a pending op, only
    // those that depend on it.
    if (pj < pendingCount && internalOps[completed + pj]!.call <= deadline) {
      steps++;
      const j = pj++;
      if (!isPend(j)) {
        const op = internalOps[completed + j]!;
        const result = model.step(state, op);
        if (result.ok) {
          let dependent = true;
          if (depth > 0 && stackOp[depth - 1]! >= completed) {
            const without = model.step(stackState[depth - 1]!, op);
            dependent = !without.ok || model.key(without.state) !== model.key(result.state);
          }
          if (dependent && push(completed + j, result.state, false)) arrived = true;
        }
      }
      continue;
    }
    // Nothing can go before the first return, whose op is not linearized: this configuration fails.
    if (!backtrack()) return { kind: "violation", longestPrefix: longest, steps };
  }
}

/**
 * The explored search nodes. A record per completed part and state (`low`, the bits of `done` from
 * word `start` on, the state key), chained on one Zobrist hash and compared exactly; under it, an
 * entry per set of pending ops linearized and context (the pending op just linearized and the
 * state before it, or none), marked once its node has failed.
 *
 * A node needs no exploring when it was explored before, or when one with the same completed part
 * and state, no context, and a subset of its pending ops failed.
 */
class ConfigurationCache {
  private readonly chains = new Map<number, number>();
  /** Per record: second hash, low, words of `done`, offset of those words, next record in the chain, first entry. */
  private records = new Int32Array(6 * 1024);
  private recordStates: string[] = [];
  private recordCount = 0;
  /** Per entry: offset of its pending words, failed (1) or not (0), next entry of the record, context op. */
  private entries = new Int32Array(4 * 1024);
  private contextKeys: string[] = [];
  private entryCount = 0;
  private arena = new Uint32Array(4096);
  private used = 0;

  constructor(private readonly pendWords: number) {}

  /** Words of bitset storage held. */
  get words(): number {
    return this.used;
  }

  /** Records the configuration and returns its entry; -1 when it needs no exploring. */
  visit(
    hashA: number,
    hashB: number,
    stateKey: string,
    low: number,
    done: Uint32Array,
    start: number,
    length: number,
    pend: Uint32Array,
    context: number,
    contextKey: string,
  ): number {
    const first = this.chains.get(hashA) ?? -1;
    let record = -1;
    for (let id = first; id !== -1; id = this.records[6 * id + 4]!) {
      const r = 6 * id;
      const { records, arena } = this;
      if (records[r] !== hashB || records[r + 1] !== low || records[r + 2] !== length) continue;
      if (this.recordStates[id] !== stateKey) continue;
      let at = records[r + 3]!;
      let same = true;
      for (let w = 0; w < length && same; w++) same = arena[at++] === done[start + w];
      if (same) {
        record = id;
        break;
      }
    }
    const { pendWords } = this;
    if (record === -1) {
      record = this.recordCount++;
      if (6 * record === this.records.length) this.records = grow(this.records);
      const r = 6 * record;
      this.records[r] = hashB;
      this.records[r + 1] = low;
      this.records[r + 2] = length;
      this.records[r + 3] = this.store(done.subarray(start, start + length));
      this.records[r + 4] = first;
      this.records[r + 5] = -1;
      this.recordStates[record] = stateKey;
      this.chains.set(hashA, record);
    } else {
      for (let id = this.records[6 * record + 5]!; id !== -1; id = this.entries[4 * id + 2]!) {
        const e = 4 * id;
        const base = this.entries[e]!;
        const theirContext = this.entries[e + 3]!;
        let equal = theirContext === context && (context === -1 || this.contextKeys[id] === contextKey);
        let subset = this.entries[e + 1] === 1 && theirContext === -1;
        for (let w = 0; w < pendWords && (equal || subset); w++) {
          const theirs = this.arena[base + w]!;
          const ours = pend[w]!;
          if (theirs !== ours) equal = false;
          if ((theirs & ~ours) !== 0) subset = false;
        }
        if (equal || subset) return -1;
      }
    }
    const entry = this.entryCount++;
    if (4 * entry === this.entries.length) this.entries = grow(this.entries);
    const e = 4 * entry;
    this.entries[e] = this.store(pend);
    this.entries[e + 1] = 0;
    this.entries[e + 2] = this.records[6 * record + 5]!;
    this.entries[e + 3] = context;
    if (context !== -1) this.contextKeys[entry] = contextKey;
    this.records[6 * record + 5] = entry;
    return entry;
  }

  /** Marks an entry's node as failed. */
  fail(entry: number): void {
    this.entries[4 * entry + 1] = 1;
  }

  private store(words: Uint32Array): number {
    const offset = this.used;
    const needed = offset + words.length;
    if (needed > this.arena.length) {
      const bigger = new Uint32Array(Math.max(needed, this.arena.length * 2));
      bigger.set(this.arena.subarray(0, offset));
      this.arena = bigger;
    }
    this.arena.set(words, offset);
    this.used = needed;
    return offset;
  }
}

function grow(array: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const bigger = new Int32Array(array.length * 2);
  bigger.set(array);
  return bigger;
}

/** A small deterministic 32-bit generator (splitmix32). */
function splitmix32(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) | 0;
  };
}

/** One key of the store as a register: the state is its value, `null` when absent. */
export const kvRegisterModel: Model<string | null, KvOp> = {
  init: () => null,
  step(state, op) {
    switch (op.kind) {
      case "put":
        return { ok: true, state: op.value! };
      case "get":
        return { ok: op.ret === null || op.output === state, state };
      case "cas": {
        const matches = state === op.expected;
        const after = matches ? op.value! : state;
        return { ok: op.ret === null || op.output === matches, state: after };
      }
    }
  },
  key: (state) => (state === null ? "" : `=${state}`),
  readOnly: (op) => op.kind === "get" || (op.kind === "cas" && op.ret !== null && op.output === false),
};

/** Throws on an operation that is malformed, rather than let a harness bug pass as a verdict. */
function validateKvOp(op: KvOp, index: number): void {
  const where = `history[${index}] (${op.kind} on ${JSON.stringify(op.key)})`;
  if (typeof op.key !== "string") throw new TypeError(`history[${index}]: key must be a string`);
  switch (op.kind) {
    case "put":
      if (typeof op.value !== "string") throw new TypeError(`${where}: put needs a string value`);
      break;
    case "get":
      if (op.ret !== null && op.output !== null && typeof op.output !== "string") {
        throw new TypeError(`${where}: a completed get needs a string or null output`);
      }
      break;
    case "cas":
      if (typeof op.value !== "string") throw new TypeError(`${where}: cas needs a string value`);
      if (op.expected !== null && typeof op.expected !== "string") {
        throw new TypeError(`${where}: cas needs expected, a string or null`);
      }
      if (op.ret !== null && typeof op.output !== "boolean") {
        throw new TypeError(`${where}: a completed cas needs a boolean output`);
      }
      break;
    default:
      throw new TypeError(`history[${index}]: unknown kind ${JSON.stringify((op as KvOp).kind)}`);
  }
}

/**
 * Checks a key-value history for linearizability, key by key. Reports the first key, in order of
 * first appearance, whose sub-history is not linearizable; otherwise the first key whose search
 * hit the step bound; otherwise ok.
 */
export function checkKv(history: readonly KvOp[], options: KvCheckOptions = {}): LinearizabilityResult {
  const byKey = new Map<string, number[]>();
  history.forEach((op, index) => {
    validateKvOp(op, index);
    let indices = byKey.get(op.key);
    if (indices === undefined) byKey.set(op.key, (indices = []));
    indices.push(index);
  });

  let unknownKey: string | undefined;
  for (const [key, keyIndices] of byKey) {
    // A pending get has no known output, so it constrains nothing.
    const relevant = keyIndices.filter((i) => !(history[i]!.kind === "get" && history[i]!.ret === null));
    const checked = checkKey(history, relevant, options.stepsMax);
    if (checked.result.kind === "unknown") {
      unknownKey ??= key;
      continue;
    }
    if (checked.result.kind === "ok") continue;

    const core =
      options.minimize === false ? relevant : minimizeViolation(history, relevant, checked, options);
    return {
      kind: "violation",
      key,
      explanation: explain(history, key, keyIndices, checked, core),
      ops: core.map((i) => history[i]!),
      keyOps: keyIndices.map((i) => history[i]!),
    };
  }
  return unknownKey === undefined ? { kind: "ok" } : { kind: "unknown", key: unknownKey };
}

interface KeyCheck {
  /** The history indices searched, after dropping and settling pending writes. */
  readonly searched: readonly number[];
  /** Pending writes taken never to have happened. */
  readonly dropped: readonly number[];
  /** Pending writes taken to have happened, as the completed ops they were checked as. */
  readonly settled: ReadonlyMap<number, KvOp>;
  readonly result: ModelResult;
  /** The longest linearizable prefix the search found, as history indices. */
  readonly prefix: readonly number[];
  /** An op that fits no point of any linearization, found without searching. */
  readonly impossible?: { readonly index: number; readonly reason: string };
}

/** Steps spent looking for a prefix to show once an op was found impossible without searching. */
const PREFIX_STEPS_MAX = 100_000;

/**
 * Checks one key's ops (history indices; no pending gets). First simplifies pending writes, the
 * source of most of the search's cost, in two ways that keep the verdict:
 * - drops those that cannot matter (see `removable`): they are taken never to have happened;
 * - settles those whose value some completed op observed while nothing else could have written
 *   it: they surely took effect (a cas, successfully) before the first such observer returned, so
 *   they are checked as completed ops returning then.
 * Before searching, it looks for an op that cannot fit anywhere (`impossibleOp`): then the search,
 * which would have to exhaust every alternative before it to prove the same, only looks for a
 * prefix to show, with a small budget.
 */
function checkKey(history: readonly KvOp[], indices: readonly number[], stepsMax?: number): KeyCheck {
  let current = [...indices];
  const dropped: number[] = [];
  for (let changed = true; changed; ) {
    const test = removalTest(current.map((i) => history[i]!));
    const drop = new Set(
      current.filter(
        (i) => history[i]!.ret === null && writes(history[i]!) !== undefined && test(history[i]!),
      ),
    );
    changed = drop.size > 0;
    dropped.push(...drop);
    current = current.filter((i) => !drop.has(i));
  }

  const writers = new Map<string, number>();
  for (const i of current) {
    const value = writes(history[i]!);
    if (value !== undefined) writers.set(value, (writers.get(value) ?? 0) + 1);
  }
  const observedBy = new Map<string, number>();
  for (const i of current) {
    const op = history[i]!;
    const value = needs(op);
    if (value !== undefined && op.ret !== null)
      observedBy.set(value, Math.min(observedBy.get(value) ?? Infinity, op.ret));
  }
  const settled = new Map<number, KvOp>();
  const ops = current.map((i) => {
    const op = history[i]!;
    const value = writes(op);
    if (op.ret !== null || value === undefined || writers.get(value) !== 1) return op;
    const by = observedBy.get(value);
    if (by === undefined || by < op.call) return op;
    const completed: KvOp = op.kind === "cas" ? { ...op, ret: by, output: true } : { ...op, ret: by };
    settled.set(i, completed);
    return completed;
  });

  const found = impossibleOp(ops);
  const budget = stepsMax ?? DEFAULT_STEPS_MAX;
  let result = checkModel(ops, kvRegisterModel, {
    stepsMax: found === undefined ? budget : Math.min(budget, PREFIX_STEPS_MAX),
  });
  if (found !== undefined && result.kind !== "violation") {
    // "ok" would be a bug in one or the other; "unknown" just ran out of steps.
    if (result.kind === "ok") throw new Error("linearizability: search and pre-check disagree");
    result = { kind: "violation", longestPrefix: result.longestPrefix, steps: result.steps };
  }
  const prefix = (result.kind === "ok" ? result.linearization : result.longestPrefix).map((k) => current[k]!);
  const impossible = found === undefined ? undefined : { index: current[found.at]!, reason: found.reason };
  return { searched: current, dropped, settled, result, prefix, ...(impossible ? { impossible } : {}) };
}

/**
 * An op (position in `ops`, one key's) that fits no point of any linearization, judging by the
 * writes alone: a read of a value nothing wrote before the read returned, a read of absent after a
 * write completed (nothing deletes), a cas failing on absent when nothing was written before it
 * returned. Cas count as reads of the value they expected when they succeeded.
 */
function impossibleOp(ops: readonly KvOp[]): { at: number; reason: string } | undefined {
  const firstWriteCall = new Map<string, number>();
  let anyWriteCall = Infinity;
  let firstWriteReturn = Infinity;
  for (const op of ops) {
    const value = writes(op);
    if (value === undefined) continue;
    firstWriteCall.set(value, Math.min(firstWriteCall.get(value) ?? Infinity, op.call));
    anyWriteCall = Math.min(anyWriteCall, op.call);
    if (op.ret !== null) firstWriteReturn = Math.min(firstWriteReturn, op.ret);
  }
  for (const [at, op] of ops.entries()) {
    if (op.ret === null || (op.kind !== "get" && op.kind !== "cas")) continue;
    const read = op.kind === "get" ? op.output : op.expected;
    const verb = op.kind === "get" ? "it read" : op.output ? "it succeeded expecting" : "it failed expecting";
    if (op.kind === "cas" && op.output === false) {
      if (read === null && !(anyWriteCall <= op.ret)) {
        return { at, reason: `${verb} absent, but nothing was written before it returned` };
      }
      continue;
    }
    if (read === null && firstWriteReturn < op.call) {
      return { at, reason: `${verb} absent, but a write completed at ${firstWriteReturn}, before its call` };
    }
    if (typeof read === "string" && !((firstWriteCall.get(read) ?? Infinity) <= op.ret)) {
      return { at, reason: `${verb} ${JSON.stringify(read)}, which nothing wrote before it returned` };
    }
  }
  return undefined;
}

/** The value an op needs to have been current when it took effect, if any. */
function needs(op: KvOp): string | undefined {
  if (op.kind === "get") return op.ret !== null && typeof op.output === "string" ? op.output : undefined;
  if (op.kind === "cas" && (op.ret === null || op.output === true)) return op.expected ?? undefined;
  return undefined;
}

/** The value an op may have written, if any. */
function writes(op: KvOp): string | undefined {
  if (op.kind === "put") return op.value;
  if (op.kind === "cas" && (op.ret === null || op.output === true)) return op.value;
  return undefined;
}

const isFailedCas = (op: KvOp) => op.kind === "cas" && op.ret !== null && op.output === false;

/**
 * For a key's ops, a test of whether a write w may be removed from them without turning a
 * linearizable set into a non-linearizable one (so the smaller set's violation implies the
 * larger's). Read-only ops (completed gets, failed cas) can always go. A write w of v can go unless
 * an op not entirely before w needs v current (a get of v, a cas expecting v), or a failed cas that
 * may fall within w's "period" (returned no earlier than w's call, and called before w was surely
 * overwritten by a later completed write) expects e != v and could find e current without w: e is
 * null while no completed write returned before the cas was called, or some writer of e is not
 * surely overwritten, by a completed write of another value, before the cas was called. Several
 * writes passing the test can go together. (Needers of v outside w's period could be let go too,
 * soundly, but then a stale read would shrink into a read of a value never written.)
 *
 * Proof sketch: take a linearization of the larger set and delete the removed ops, and pending cas
 * that failed in it. States change only within a removed write's period; no remaining op observed
 * its value there, no failed cas there can now succeed, no pending cas there had succeeded.
 * `ops` may include the writes tested, which only makes the test stricter.
 */
function removalTest(ops: readonly KvOp[]): (w: KvOp) => boolean {
  // Completed writes by call time, with suffix minima of their returns: the smallest, and the
  // smallest of a value other than the smallest's, so "the earliest return of a write of a value
  // other than e called after t".
  const definite = ops
    .filter((op) => op.ret !== null && writes(op) !== undefined)
    .sort((a, b) => a.call - b.call);
  const m = definite.length;
  const bestRet = new Float64Array(m + 1).fill(Infinity);
  const bestValue: (string | undefined)[] = new Array(m + 1);
  const otherRet = new Float64Array(m + 1).fill(Infinity);
  let firstReturn = Infinity;
  for (let i = m - 1; i >= 0; i--) {
    const op = definite[i]!;
    const ret = op.ret!;
    const value = writes(op)!;
    firstReturn = Math.min(firstReturn, ret);
    bestRet[i] = bestRet[i + 1]!;
    bestValue[i] = bestValue[i + 1];
    otherRet[i] = otherRet[i + 1]!;
    if (ret < bestRet[i]!) {
      if (value !== bestValue[i]) otherRet[i] = bestRet[i]!;
      bestRet[i] = ret;
      bestValue[i] = value;
    } else if (value !== bestValue[i]) {
      otherRet[i] = Math.min(otherRet[i]!, ret);
    }
  }
  /** When `writer` is surely overwritten: by any later write, or (`otherValue`) by one of another value. */
  const overwrittenBy = (writer: KvOp, otherValue: boolean): number => {
    if (writer.ret === null) return Infinity;
    let lo = 0;
    let hi = m;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (definite[mid]!.call > writer.ret) hi = mid;
      else lo = mid + 1;
    }
    return !otherValue || bestValue[lo] !== writes(writer) ? bestRet[lo]! : otherRet[lo]!;
  };

  const writersOf = new Map<string, KvOp[]>();
  const needersOf = new Map<string, KvOp[]>();
  const push = (map: Map<string, KvOp[]>, value: string, op: KvOp) => {
    const list = map.get(value);
    if (list === undefined) map.set(value, [op]);
    else list.push(op);
  };
  for (const op of ops) {
    const written = writes(op);
    if (written !== undefined) push(writersOf, written, op);
    const needed = needs(op);
    if (needed !== undefined) push(needersOf, needed, op);
  }
  // Failed cas that could succeed were a write before them removed.
  const risky = ops.filter((op) => {
    if (!isFailedCas(op)) return false;
    const expected = op.expected ?? null;
    if (expected === null) return !(firstReturn < op.call);
    return (writersOf.get(expected) ?? []).some((writer) => !(overwrittenBy(writer, true) < op.call));
  });

  return (w) => {
    const value = writes(w);
    if (value === undefined) return true;
    const notBefore = (op: KvOp) => op.ret === null || op.ret >= w.call;
    if ((needersOf.get(value) ?? []).some((op) => op !== w && notBefore(op))) return false;
    const until = overwrittenBy(w, false);
    return !risky.some((op) => op.expected !== value && notBefore(op) && op.call <= until);
  };
}

/** Whether `removed` can all go from a key's ops, leaving `candidate` (history indices): see `removalTest`. */
function removable(
  history: readonly KvOp[],
  candidate: readonly number[],
  removed: readonly number[],
): boolean {
  const writesRemoved = removed.map((i) => history[i]!).filter((op) => writes(op) !== undefined);
  if (writesRemoved.length === 0) return true;
  const test = removalTest(candidate.map((i) => history[i]!));
  return writesRemoved.every(test);
}

/**
 * Shrinks a non-linearizable set of history indices (one key) greedily, where budget allows:
 * first drops everything called after the point where the search got stuck, then read-only ops,
 * then groups of ops linked by values (a write, the ops that need its value, the failed cas that
 * expected it), then single ops; each in chunks of halving size, then one at a time until none can
 * go. Only removals that cannot manufacture a violation are tried (`removalTest`), so the core's
 * violation implies the whole history's; without that rule every core would collapse into one
 * read of a value that merely looks never written, which says nothing about the real anomaly. A
 * sub-check that answers "unknown" counts as not a violation, so the result is always itself a
 * violation.
 */
function minimizeViolation(
  history: readonly KvOp[],
  indices: readonly number[],
  checked: KeyCheck,
  options: CheckOptions,
): number[] {
  let budget = MINIMIZE_STEPS_MAX;
  // A sub-history far harder to refute than the whole was is taken as not refuted.
  const perCheck = Math.min(
    options.stepsMax ?? DEFAULT_STEPS_MAX,
    Math.max(100_000, 4 * checked.result.steps),
  );
  const tryRemove = (candidate: number[], removed: number[]): boolean => {
    // Work outside the search counts too: a few units per op looked at.
    budget -= 4 * (candidate.length + removed.length);
    if (budget <= 0 || candidate.length === 0 || !removable(history, candidate, removed)) return false;
    const { result } = checkKey(history, candidate, Math.min(perCheck, budget));
    budget -= result.steps;
    return result.kind === "violation";
  };
  /** Removes units (lists of indices) from `fixed` plus them: chunks of halving size, then one at a time until none can go. */
  const shrink = (fixed: number[], units: number[][]): number[] => {
    let current = units;
    let chunk = Math.max(1, Math.ceil(current.length / 2));
    for (;;) {
      let shrunk = false;
      for (let at = 0; at < current.length && budget > 0; ) {
        const kept = [...current.slice(0, at), ...current.slice(at + chunk)];
        if (tryRemove([...fixed, ...kept.flat()], current.slice(at, at + chunk).flat())) {
          current = kept;
          shrunk = true;
        } else {
          at += chunk;
        }
      }
      if (budget <= 0 || (chunk === 1 && !shrunk)) return [...fixed, ...current.flat()].sort((a, b) => a - b);
      if (chunk > 1) chunk = Math.ceil(chunk / 2);
    }
  };

  let current = [...indices];
  const stuck = stuckAt(history, checked);
  if (stuck.deadlineOp !== -1) {
    const later = current.filter((i) => history[i]!.call > stuck.deadline);
    const earlier = current.filter((i) => history[i]!.call <= stuck.deadline);
    if (later.length > 0 && tryRemove(earlier, later)) current = earlier;
  }
  const isRead = (i: number) => writes(history[i]!) === undefined;
  current = shrink(
    current.filter((i) => !isRead(i)),
    current.filter(isRead).map((i) => [i]),
  );
  current = shrink([], valueGroups(history, current));
  return shrink(
    [],
    current.map((i) => [i]),
  );
}

/** Partitions ops into groups linked by values: an op joins the values it writes, needs, or (failed cas) expected. */
function valueGroups(history: readonly KvOp[], indices: readonly number[]): number[][] {
  const parent = new Map<string, string>();
  const find = (value: string): string => {
    let root = value;
    for (let up = parent.get(root); up !== undefined && up !== root; up = parent.get(root)) root = up;
    parent.set(value, root);
    return root;
  };
  const linked = (op: KvOp): string[] => {
    const values = [writes(op), needs(op), isFailedCas(op) ? (op.expected ?? undefined) : undefined];
    return values.filter((value): value is string => value !== undefined);
  };
  for (const i of indices) {
    const [head, ...rest] = linked(history[i]!);
    if (head === undefined) continue;
    for (const value of rest) {
      const a = find(head);
      const b = find(value);
      if (a !== b) parent.set(b, a);
    }
  }
  const groups = new Map<string, number[]>();
  const units: number[][] = [];
  for (const i of indices) {
    const [head] = linked(history[i]!);
    if (head === undefined) {
      units.push([i]);
      continue;
    }
    const root = find(head);
    let group = groups.get(root);
    if (group === undefined) {
      groups.set(root, (group = []));
      units.push(group);
    }
    group.push(i);
  }
  return units;
}

/**
 * Where the longest prefix got stuck: the state after it, and the first op not in it to return
 * (by its return, or for a settled pending write by when it was observed), which bounds what may
 * go next; -1 when none.
 */
function stuckAt(
  history: readonly KvOp[],
  checked: KeyCheck,
): { state: string | null; deadline: number; deadlineOp: number; remaining: number[] } {
  const opAt = (i: number) => checked.settled.get(i) ?? history[i]!;
  let state: string | null = kvRegisterModel.init();
  for (const i of checked.prefix) state = kvRegisterModel.step(state, opAt(i)).state;
  const done = new Set(checked.prefix);
  const remaining = checked.searched.filter((i) => !done.has(i));
  let deadline = Number.POSITIVE_INFINITY;
  let deadlineOp = -1;
  for (const i of remaining) {
    const ret = opAt(i).ret;
    if (ret !== null && ret < deadline) {
      deadline = ret;
      deadlineOp = i;
    }
  }
  return { state, deadline, deadlineOp, remaining };
}

function show(value: string | null | boolean | undefined): string {
  return value === undefined ? "?" : JSON.stringify(value);
}

/** One line per op: its index in the history, client, call, output and interval. */
export function formatKvOp(op: KvOp, index?: number): string {
  const id = index === undefined ? "" : `#${index} `;
  const key = JSON.stringify(op.key);
  const output = op.ret === null ? "?" : show(op.output);
  let text: string;
  switch (op.kind) {
    case "put":
      text = `put(${key}, ${show(op.value)})`;
      break;
    case "get":
      text = `get(${key}) -> ${output}`;
      break;
    case "cas":
      text = `cas(${key}, ${show(op.expected)} -> ${show(op.value)}) -> ${output}`;
      break;
  }
  const interval = op.ret === null ? `[${op.call}, never returned)` : `[${op.call}, ${op.ret}]`;
  return `${id}client ${op.client}: ${text} ${interval}`;
}

/** Why `op` cannot be linearized in `state`, or undefined if it can. */
function whyNot(state: string | null, op: KvOp): string | undefined {
  if (kvRegisterModel.step(state, op).ok) return undefined;
  if (op.kind === "get") return `it read ${show(op.output)} but the value would be ${show(state)}`;
  const matches = state === op.expected;
  return `the value would be ${show(state)}, so it would have ${matches ? "succeeded" : "failed"}, but it returned ${show(op.output)}`;
}

const PREFIX_SHOWN_MAX = 25;
const LISTED_MAX = 40;

function explain(
  history: readonly KvOp[],
  key: string,
  keyIndices: readonly number[],
  checked: KeyCheck,
  core: readonly number[],
): string {
  const { searched, dropped, settled, prefix } = checked;
  const lines: string[] = [];
  const relevant = searched.length + dropped.length;
  const pendingGets = keyIndices.length - relevant;
  lines.push(
    `Key ${JSON.stringify(key)} is not linearizable: no order of its ${relevant} op(s)` +
      (pendingGets > 0 ? ` (plus ${pendingGets} pending get(s), which constrain nothing)` : "") +
      " respects both real time and register semantics.",
  );

  if (checked.impossible !== undefined) {
    const { index, reason } = checked.impossible;
    lines.push("", `${formatKvOp(history[index]!, index)} fits nowhere: ${reason}.`);
  }

  lines.push("", `These ${core.length} op(s) alone already admit no linearization:`);
  for (const i of core.slice(0, LISTED_MAX)) lines.push(`  ${formatKvOp(history[i]!, i)}`);
  if (core.length > LISTED_MAX) lines.push(`  ... and ${core.length - LISTED_MAX} more (see \`ops\`)`);

  if (dropped.length > 0) {
    lines.push(
      "",
      `${dropped.length} pending write(s) could not matter and were taken never to have happened: ` +
        dropped
          .slice(0, LISTED_MAX)
          .map((i) => `#${i}`)
          .join(", ") +
        (dropped.length > LISTED_MAX ? ", ..." : ""),
    );
  }
  if (settled.size > 0) {
    lines.push(
      "",
      `${settled.size} pending write(s) were observed, so they were checked as having happened by:`,
    );
    for (const [i, op] of [...settled].slice(0, LISTED_MAX)) lines.push(`  #${i} by ${op.ret}`);
    if (settled.size > LISTED_MAX) lines.push("  ...");
  }

  lines.push(
    "",
    `Longest linearizable prefix the search found: ${prefix.length} of ${searched.length} op(s)` +
      (prefix.length === 0 ? "." : ", with the value after each:"),
  );
  const opAt = (i: number) => settled.get(i) ?? history[i]!;
  let state: string | null = kvRegisterModel.init();
  const skip = Math.max(0, prefix.length - PREFIX_SHOWN_MAX);
  if (skip > 0) lines.push(`  ... ${skip} earlier op(s) omitted`);
  prefix.forEach((i, position) => {
    state = kvRegisterModel.step(state, opAt(i)).state;
    if (position >= skip) lines.push(`  ${position + 1}. ${formatKvOp(history[i]!, i)}  => ${show(state)}`);
  });

  // Where that prefix got stuck: the first op not in it to return bounds what may go next; each
  // op called by then is a candidate.
  const { deadline, deadlineOp, remaining } = stuckAt(history, checked);
  if (deadlineOp !== -1) {
    lines.push(
      "",
      `From there (value ${show(state)}), ${formatKvOp(history[deadlineOp]!, deadlineOp)} must be ` +
        `linearized by ${deadline}, and no op called by then can go next:`,
    );
    for (const i of remaining) {
      const op = opAt(i);
      if (op.call > deadline) continue;
      const reason = whyNot(state, op) ?? "it could go next, but no continuation after it works either";
      lines.push(`  ${formatKvOp(history[i]!, i)}: ${reason}`);
    }
  }
  return lines.join("\n");
}
