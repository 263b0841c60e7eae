import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { unpack } from "msgpackr";
import {
  decodeKvRecord,
  KV_LIMITS_DEFAULT,
  kvSpecs,
  SESSION_LIMITS_DEFAULT,
  sessionSpecs,
} from "../../src/coordination/index.js";
import { MetaraftError } from "../../src/errors.js";
import type { EventDraft } from "../../src/events/index.js";
import type { Execution, Request, RequestSpec } from "../../src/execution/types.js";
import { MemoryState } from "../namespace/memory-state.js";

/** The kv and session specs over a sorted in-memory state, as the executor runs them. */
class Store {
  readonly state = new MemoryState();
  readonly events: EventDraft[] = [];
  readonly #specs: Map<string, RequestSpec>;
  txid = 100;

  constructor(ephemeralKeysMax: number) {
    const limits = { ...SESSION_LIMITS_DEFAULT, ephemeralKeysMax };
    this.#specs = new Map(
      [...kvSpecs(KV_LIMITS_DEFAULT, ephemeralKeysMax), ...sessionSpecs(limits)].map((s) => [s.op, s]),
    );
  }

  /** Runs a request; a refusal changes nothing and is returned as its code. */
  run(raw: Request): Record<string, unknown> | string {
    const spec = this.#specs.get(raw.op)!;
    const request = spec.validate(raw);
    let execution: Execution;
    try {
      execution = spec.execute(request, { txid: this.txid + 1, time: 1_000, reader: this.state });
    } catch (error) {
      if (error instanceof MetaraftError) return error.code;
      throw error;
    }
    this.txid++;
    this.state.apply(execution);
    this.events.push(...(execution.events ?? []));
    return execution.reply as Record<string, unknown>;
  }
}

type Step =
  | { kind: "create" }
  | { kind: "put"; key: string; session: number | null }
  | { kind: "txnPut"; key: string; session: number | null }
  | { kind: "delete"; key: string }
  | { kind: "close"; session: number }
  | { kind: "expire"; sessions: number[] };

const keys = fc.constantFrom("a", "b", "c", "d/1", "d/2");
/** Sessions are named by the order of their creates (0 = the first), mapped to ids at run time. */
const sessionRef = fc.integer({ min: 0, max: 3 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ kind: "create" as const }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("put" as const), key: keys, session: fc.option(sessionRef) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("txnPut" as const), key: keys, session: fc.option(sessionRef) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("delete" as const), key: keys }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("close" as const), session: sessionRef }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("expire" as const),
      sessions: fc.uniqueArray(sessionRef, { maxLength: 3 }),
    }),
  },
);

describe("sessions and ephemeral entries against a model", () => {
  it("ownership, counts, the index, the limits and the events agree with a plain model (property)", () => {
    const ephemeralKeysMax = 3;
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 50 }), (steps) => {
        const store = new Store(ephemeralKeysMax);
        // The model: each key's value and owner (0: persistent); the open sessions.
        const model = new Map<string, { value: string; owner: number }>();
        const open = new Set<number>();
        const ids: number[] = [];
        const expectedEvents: string[] = [];
        const idOf = (ref: number | null) => (ref === null ? 0 : (ids[ref] ?? 999_999));
        const owned = (id: number) => [...model.values()].filter((e) => e.owner === id).length;
        const endSession = (id: number) => {
          for (const [key, entry] of [...model].sort(([a], [b]) => (a < b ? -1 : 1))) {
            if (entry.owner === id) {
              model.delete(key);
              expectedEvents.push(`KvDelete:Delete ${key}`);
            }
          }
          open.delete(id);
        };
        let n = 0;
        for (const step of steps) {
          n++;
          if (step.kind === "create") {
            const reply = store.run({ op: "sessionCreate", ttlMs: 5_000 }) as { sessionId: number };
            ids.push(reply.sessionId);
            open.add(reply.sessionId);
          } else if (step.kind === "put" || step.kind === "txnPut") {
            const session = idOf(step.session);
            const value = `v${n}`;
            const before = model.get(step.key);
            const attaching = session !== 0 && before?.owner !== session;
            const expected =
              session !== 0 && !open.has(session)
                ? "MR_ERR_SESSION_EXPIRED"
                : attaching && owned(session) >= ephemeralKeysMax
                  ? "MR_ERR_SESSION_LIMIT"
                  : undefined;
            const reply =
              step.kind === "put"
                ? store.run({ op: "kvPut", key: step.key, value, ...(session ? { session } : {}) })
                : store.run({
                    op: "kvTxn",
                    success: [{ op: "put", key: step.key, value, ...(session ? { session } : {}) }],
                  });
            if (expected) {
              assert.equal(reply, expected);
            } else {
              assert.equal(typeof reply, "object", String(reply));
              model.set(step.key, { value, owner: session });
              expectedEvents.push(`KvPut:Put ${step.key}`);
            }
          } else if (step.kind === "delete") {
            store.run({ op: "kvDelete", key: step.key });
            if (model.delete(step.key)) expectedEvents.push(`KvDelete:Delete ${step.key}`);
          } else if (step.kind === "close") {
            const id = idOf(step.session);
            const reply = store.run({ op: "sessionClose", sessionId: id });
            if (open.has(id)) {
              assert.equal((reply as { deleted: number }).deleted, owned(id));
              endSession(id);
            } else {
              assert.equal(reply, "MR_ERR_SESSION_EXPIRED");
            }
          } else {
            const targets = step.sessions.map((ref) => idOf(ref)).filter((id) => id !== 999_999);
            if (targets.length === 0) continue;
            const reply = store.run({ op: "sessionExpire", items: targets.map((id) => [id, 500]) }) as {
              expired: number[];
              gone: number[];
            };
            assert.deepEqual(
              reply.expired,
              targets.filter((id) => open.has(id)),
            );
            assert.deepEqual(
              reply.gone,
              targets.filter((id) => !open.has(id)),
            );
            for (const id of targets) if (open.has(id)) endSession(id);
          }

          // The state: every entry with its owner; each open session's count; the index exactly
          // the ephemeral entries; the open count; a tombstone for each ended session.
          const entries = store.state.entries("kv").map(({ key, value }) => {
            const r = decodeKvRecord(value);
            return [key, { value: r.value as string, owner: r.session ?? 0 }] as const;
          });
          assert.deepEqual(
            entries,
            [...model].sort(([a], [b]) => (a < b ? -1 : 1)),
          );
          const rows = store.state.entries("sessions");
          const records = rows.filter((r) => r.key.startsWith("s/"));
          assert.deepEqual(
            records.map((r) => Number.parseInt(r.key.slice(2), 16)),
            [...open].sort((a, b) => a - b),
          );
          for (const r of records) {
            const id = Number.parseInt(r.key.slice(2), 16);
            assert.equal((unpack(r.value) as number[])[3], owned(id), `session ${id}'s count`);
          }
          const indexed = rows
            .filter((r) => r.key.startsWith("e/"))
            .map((r) => `${Number.parseInt(r.key.slice(2, 18), 16)} ${Buffer.from(r.value).toString()}`)
            .sort();
          const expectedIndex = [...model]
            .filter(([, e]) => e.owner !== 0)
            .map(([key, e]) => `${e.owner} ${key}`)
            .sort();
          assert.deepEqual(indexed, expectedIndex);
          const count = rows.find((r) => r.key === "m/count");
          assert.equal(count ? (unpack(count.value) as number) : 0, open.size);
          const tombstones = rows.filter((r) => r.key.startsWith("x/")).length;
          assert.equal(tombstones, ids.length - open.size);
        }
        assert.deepEqual(
          store.events.map((e) => `${e.type} ${e.key}`),
          expectedEvents,
        );
      }),
      { numRuns: 300 },
    );
  });
});
