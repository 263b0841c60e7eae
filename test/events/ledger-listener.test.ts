import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { type LedgerEvent, LedgerListener, type LedgerListenerOptions } from "../../src/events/index.js";
import { events, type TestContext, testContext } from "../helpers/listener.js";
import { SimRuntime } from "../sim/node/runtime.js";

/**
 * The listener base over a virtual runtime: every wait (poll, checkpoint interval, backoff,
 * stop timeout) is on the virtual clock, so the tests state exact times without sleeping.
 */

type Behaviour = (events: readonly LedgerEvent[], signal: AbortSignal, attempt: number) => Promise<void>;

class Recorder extends LedgerListener {
  readonly name = "recorder";
  readonly version = "1.0.0";
  /** Each successful call's txids. */
  readonly batches: number[][] = [];
  /** Each call: its first txid and the virtual time. */
  readonly calls: { first: number; at: number; signal: AbortSignal }[] = [];
  readonly missed: [number, number][] = [];
  behaviour: Behaviour = async () => {};
  #defaults: Partial<LedgerListenerOptions>;

  constructor(
    readonly runtime: SimRuntime,
    defaults: Partial<LedgerListenerOptions> = {},
  ) {
    super();
    this.#defaults = defaults;
  }

  protected override defaults(): Partial<LedgerListenerOptions> {
    return this.#defaults;
  }

  get delivered(): number[] {
    return this.batches.flat();
  }

  override async onEvents(batch: readonly LedgerEvent[], signal: AbortSignal): Promise<void> {
    const first = batch[0]!.txid;
    const attempt = this.calls.filter((c) => c.first === first).length + 1;
    this.calls.push({ first, at: this.runtime.time, signal });
    await this.behaviour(batch, signal, attempt);
    this.batches.push(batch.map((e) => e.txid));
  }

  override onMissed(fromTxid: number, toTxid: number): void {
    this.missed.push([fromTxid, toTxid]);
  }
}

/** The simulator's runtime, with a turn of the event loop first: a test's own call (leaderReady, append) starts promise chains outside any scheduled event. */
class TestRuntime extends SimRuntime {
  override async runUntil(until: number): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await super.runUntil(until);
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function setup(
  options: Record<string, unknown> = {},
  defaults: Partial<LedgerListenerOptions> = {},
): Promise<{ rt: SimRuntime; ctx: TestContext; listener: Recorder }> {
  const rt = new TestRuntime(() => 0.5);
  const ctx = testContext(rt);
  const listener = new Recorder(rt, defaults);
  await listener.init(ctx, options);
  return { rt, ctx, listener };
}

describe("LedgerListener", () => {
  it("delivers in txid order in batches from the replicated checkpoint, and new events as they are appended", async () => {
    const { rt, ctx, listener } = await setup({ batch_events_max: 4, poll_ms: 60_000 });
    ctx.stored = 3;
    ctx.ledgerMemory.append(...events(1, 10));
    listener.start();
    await rt.runUntil(10);
    assert.deepEqual(listener.batches, [], "not leading: nothing delivered");
    ctx.leadershipControl.lead(1);
    await rt.runUntil(20);
    assert.deepEqual(listener.batches, [range(4, 7), range(8, 10)]);
    // An append wakes the loop at once, long before the poll interval.
    ctx.ledgerMemory.append(...events(11, 12));
    await rt.runUntil(30);
    assert.deepEqual(listener.delivered, range(4, 12));
    const status = listener.status();
    assert.equal(status.state, "running");
    assert.equal(status.delivered, 12);
    assert.equal(status.eventsDelivered, 9);
    assert.equal(status.lagTxids, 0);
    assert.equal(status.errors, 0);
    await listener.stop();
    assert.equal(listener.status().state, "stopped");
    assert.equal(ctx.ledgerMemory.subscribers, 0);
    assert.equal(ctx.leadershipControl.subscribers, 0);
  });

  it("keeps a txid's events in one batch, beyond batch_events_max", async () => {
    const { rt, ctx, listener } = await setup({ batch_events_max: 2 });
    ctx.ledgerMemory.append(
      ...events(1, 1),
      ...events(2, 2),
      ...events(2, 2),
      ...events(2, 2),
      ...events(3, 3),
    );
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.batches, [[1, 2, 2, 2], [3]]);
  });

  it("checkpoints every checkpoint_events events", async () => {
    const { rt, ctx, listener } = await setup({
      batch_events_max: 2,
      checkpoint_events: 5,
      checkpoint_ms: 3_600_000,
    });
    ctx.ledgerMemory.append(...events(1, 12));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.delivered, range(1, 12));
    // After 6 delivered (the first batch end at or past 5), then 6 more.
    assert.deepEqual(
      ctx.checkpoints.map((c) => c.txid),
      [6, 12],
    );
    assert.equal(listener.status().checkpoint, 12);
    assert.equal(ctx.stored, 12);
  });

  it("checkpoints checkpoint_ms after the last one when events were delivered since, even while idle", async () => {
    const { rt, ctx, listener } = await setup({
      checkpoint_events: 1000,
      checkpoint_ms: 100,
      poll_ms: 60_000,
    });
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    ctx.ledgerMemory.append(...events(1, 3));
    await rt.runUntil(99);
    assert.deepEqual(listener.delivered, [1, 2, 3]);
    assert.equal(ctx.checkpoints.length, 0, "not due before checkpoint_ms");
    await rt.runUntil(100);
    assert.deepEqual(ctx.checkpoints, [{ txid: 3, at: 100 }]);
    // Nothing new: no further checkpoint, however long it idles.
    await rt.runUntil(1000);
    assert.equal(ctx.checkpoints.length, 1);
    ctx.ledgerMemory.append(...events(4, 4));
    await rt.runUntil(1100);
    assert.deepEqual(
      ctx.checkpoints.map((c) => c.txid),
      [3, 4],
    );
  });

  it("a failed checkpoint is counted, delivery goes on, and the next due one is taken", async () => {
    const { rt, ctx, listener } = await setup({ batch_events_max: 1, checkpoint_events: 2 });
    ctx.failCheckpoints = 1;
    ctx.ledgerMemory.append(...events(1, 4));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.delivered, range(1, 4));
    assert.deepEqual(
      ctx.checkpoints.map((c) => c.txid),
      [2, 4],
    );
    assert.equal(ctx.stored, 4);
    assert.equal(listener.status().errors, 1);
    assert.match(listener.status().lastError ?? "", /^checkpoint: injected checkpoint failure/);
  });

  it("reports a pruned range to onMissed before delivering what follows it", async () => {
    const { rt, ctx, listener } = await setup();
    ctx.stored = 2;
    ctx.ledgerMemory.append(...events(1, 8));
    ctx.ledgerMemory.prune(5);
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.missed, [[3, 5]]);
    assert.deepEqual(listener.batches, [[6, 7, 8]]);
  });

  it("the default onMissed logs a warning, and a range with nothing after it still moves the cursor on", async () => {
    const rt = new TestRuntime(() => 0.5);
    const ctx = testContext(rt, "plain");
    class Plain extends LedgerListener {
      readonly name = "plain";
      readonly version = "1.0.0";
      override async onEvents(): Promise<void> {}
    }
    const listener = new Plain();
    await listener.init(ctx, { checkpoint_ms: 50 });
    ctx.ledgerMemory.append(...events(1, 4));
    ctx.ledgerMemory.prune(4);
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(100);
    const warning = ctx.logs.find((l) => l.level === "warn");
    assert.ok(warning, "a warning was logged");
    assert.deepEqual(warning.fields, { listener: "plain", fromTxid: 1, toTxid: 4 });
    assert.equal(ctx.logs.filter((l) => l.level === "warn").length, 1, "reported once, not at every read");
    assert.equal(listener.status().delivered, 4);
    assert.equal(ctx.stored, 4, "the pruned range is checkpointed past");
  });

  it("retries a throwing onEvents with jittered exponential backoff, in order, skipping nothing", async () => {
    const { rt, ctx, listener } = await setup({
      batch_events_max: 3,
      retry_initial_ms: 100,
      retry_max_ms: 300,
    });
    listener.behaviour = async (batch, _signal, attempt) => {
      if (batch[0]!.txid === 4 && attempt <= 4) throw new Error(`boom ${attempt}`);
    };
    ctx.ledgerMemory.append(...events(1, 9));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(1);
    assert.equal(listener.status().state, "retrying");
    assert.equal(listener.status().lastError, "onEvents: boom 1");
    await rt.runUntil(5000);
    assert.deepEqual(listener.batches, [range(1, 3), range(4, 6), range(7, 9)]);
    const attempts = listener.calls.filter((c) => c.first === 4).map((c) => c.at);
    // random() = 0.5: each wait is 3/4 of the doubling delay, capped at retry_max_ms.
    assert.deepEqual(attempts, [0, 75, 75 + 150, 75 + 150 + 225, 75 + 150 + 225 + 225]);
    const status = listener.status();
    assert.equal(status.state, "running");
    assert.equal(status.errors, 4);
    assert.equal(status.lastError, "onEvents: boom 4");
    assert.equal(status.eventsDelivered, 9);
  });

  it("jitter draws each wait from [d/2, d] with the runtime's random", async () => {
    for (const [random, expected] of [
      [0, 50],
      [0.999, 100],
    ] as const) {
      const rt = new TestRuntime(() => random);
      const ctx = testContext(rt);
      const listener = new Recorder(rt);
      await listener.init(ctx, { retry_initial_ms: 100 });
      listener.behaviour = async (_batch, _signal, attempt) => {
        if (attempt === 1) throw new Error("once");
      };
      ctx.ledgerMemory.append(...events(1, 1));
      listener.start();
      ctx.leadershipControl.lead(1);
      await rt.runUntil(1000);
      assert.deepEqual(
        listener.calls.map((c) => c.at),
        [0, expected],
      );
    }
  });

  it("a failing read is retried the same way and counted", async () => {
    const { rt, ctx, listener } = await setup({ retry_initial_ms: 10 });
    ctx.ledgerMemory.failReads = 2;
    ctx.ledgerMemory.append(...events(1, 2));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(1000);
    assert.deepEqual(listener.delivered, [1, 2]);
    assert.equal(listener.status().errors, 2);
    assert.match(listener.status().lastError ?? "", /^read: injected read failure/);
  });

  it("stop while onEvents hangs (ignoring its signal) returns after stop_timeout_ms, not before", async () => {
    const { rt, ctx, listener } = await setup({ stop_timeout_ms: 500 });
    listener.behaviour = () => new Promise<void>(() => {});
    ctx.ledgerMemory.append(...events(1, 2));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.equal(listener.calls.length, 1);
    let stopped = false;
    const stopping = listener.stop().then(() => {
      stopped = true;
    });
    assert.equal(listener.calls[0]!.signal.aborted, true, "the call's signal aborts at once");
    await rt.runUntil(10 + 499);
    assert.equal(stopped, false);
    await rt.runUntil(10 + 500);
    await stopping;
    assert.equal(listener.status().state, "stopped");
    assert.ok(ctx.logs.some((l) => l.level === "warn" && /stop_timeout_ms/.test(l.message)));
    assert.equal(ctx.checkpoints.length, 0, "nothing was delivered, so nothing is checkpointed");
  });

  it("stop while onEvents honours its signal returns as soon as the call gives up, and checkpoints what was delivered", async () => {
    const { rt, ctx, listener } = await setup({ batch_events_max: 1, checkpoint_ms: 3_600_000 });
    listener.behaviour = (batch, signal) =>
      batch[0]!.txid < 3
        ? Promise.resolve()
        : new Promise<void>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    ctx.ledgerMemory.append(...events(1, 3));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.delivered, [1, 2]);
    assert.equal(ctx.checkpoints.length, 0);
    await listener.stop();
    assert.deepEqual(
      ctx.checkpoints.map((c) => c.txid),
      [2],
    );
    assert.equal(listener.status().errors, 0, "a call that gives up on abort is no error");
  });

  it("notLeader aborts delivery and stops it; leaderReady resumes from the replicated checkpoint", async () => {
    const { rt, ctx, listener } = await setup({ batch_events_max: 1, checkpoint_ms: 3_600_000 });
    let hold: AbortSignal | undefined;
    listener.behaviour = (batch, signal) => {
      if (batch[0]!.txid !== 6) return Promise.resolve();
      hold = signal;
      return new Promise<void>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    };
    ctx.ledgerMemory.append(...events(1, 6));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.delivered, range(1, 5));
    ctx.leadershipControl.lose();
    assert.equal(hold?.aborted, true);
    await rt.runUntil(20);
    assert.equal(listener.status().state, "idle");
    // The best-effort checkpoint of the term that ended.
    assert.deepEqual(
      ctx.checkpoints.map((c) => c.txid),
      [5],
    );
    ctx.ledgerMemory.append(...events(7, 9));
    await rt.runUntil(5000);
    assert.deepEqual(listener.delivered, range(1, 5), "no delivery while not the leader");
    // Meanwhile another node's listener delivered through 7.
    ctx.stored = 7;
    listener.behaviour = async () => {};
    ctx.leadershipControl.lead(3);
    await rt.runUntil(5010);
    assert.deepEqual(listener.delivered, [...range(1, 5), 8, 9]);
    assert.equal(listener.status().state, "running");
    await listener.stop();
  });

  it("a new term waits (bounded) for the last term's hanging call before delivering again", async () => {
    const { rt, ctx, listener } = await setup({ stop_timeout_ms: 300 });
    listener.behaviour = (batch) => (batch[0]!.txid === 1 ? new Promise<void>(() => {}) : Promise.resolve());
    ctx.ledgerMemory.append(...events(1, 1));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    ctx.leadershipControl.lose();
    ctx.leadershipControl.lead(2);
    await rt.runUntil(10 + 299);
    assert.equal(listener.calls.length, 1, "no second call while the first may still run");
    listener.behaviour = async () => {};
    await rt.runUntil(10 + 301);
    assert.deepEqual(
      listener.calls.map((c) => c.first),
      [1, 1],
    );
    assert.deepEqual(listener.delivered, [1]);
  });

  it("reports lag in txids and in ms", async () => {
    const { rt, ctx, listener } = await setup({ batch_events_max: 2 });
    let release: (() => void) | undefined;
    listener.behaviour = () => new Promise<void>((resolve) => (release = resolve));
    const base = rt.now();
    ctx.ledgerMemory.append(...events(1, 5, (txid) => ({ time: base + txid })));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(100);
    const status = listener.status();
    assert.equal(status.lagTxids, 5);
    assert.equal(status.lagMs, 100 - 1);
    release!();
    await rt.runUntil(101);
    assert.equal(listener.status().lagTxids, 3);
    const metrics = await ctx.metrics.getMetricsAsJSON();
    const lag = metrics.find((m) => m.name === "metaraft_listener_lag_txids");
    assert.deepEqual(lag?.values, [{ value: 3, labels: { listener: "test-listener" } }]);
  });

  it("counts delivered events and errors in the context's registry, per listener name, sharing one registry", async () => {
    const rt = new TestRuntime(() => 0.5);
    const a = testContext(rt, "first");
    const b = { ...testContext(rt, "second"), metrics: a.metrics };
    const one = new Recorder(rt);
    const two = new Recorder(rt);
    await one.init(a, {});
    await two.init(b, { retry_initial_ms: 10 });
    two.behaviour = async (_batch, _signal, attempt) => {
      if (attempt === 1) throw new Error("once");
    };
    a.ledgerMemory.append(...events(1, 3));
    b.ledgerMemory.append(...events(1, 2));
    for (const [listener, ctx] of [
      [one, a],
      [two, b],
    ] as const) {
      listener.start();
      ctx.leadershipControl.lead(1);
    }
    await rt.runUntil(100);
    const metrics = await a.metrics.getMetricsAsJSON();
    const values = (name: string) => metrics.find((m) => m.name === name)?.values;
    assert.deepEqual(values("metaraft_listener_events_delivered_total"), [
      { value: 3, labels: { listener: "first" } },
      { value: 2, labels: { listener: "second" } },
    ]);
    assert.deepEqual(values("metaraft_listener_errors_total"), [
      { value: 1, labels: { listener: "second" } },
    ]);
  });

  it("checks its options, naming the listener and the option", async () => {
    const rt = new TestRuntime(() => 0.5);
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ batch_events_max: 0 }, /option batch_events_max must be 1 to 10000 \(got 0\)/],
      [{ batch_events_max: 10_001 }, /option batch_events_max must be 1 to 10000/],
      [{ checkpoint_ms: "1s" }, /option checkpoint_ms must be an integer/],
      [{ stop_timeout_ms: 1.5 }, /option stop_timeout_ms must be an integer/],
      [{ retry_initial_ms: 1000, retry_max_ms: 100 }, /option retry_initial_ms must be at most retry_max_ms/],
      [
        { checkpoint_event: 10 },
        /option checkpoint_event is not an option of this listener \(it takes none\)/,
      ],
    ];
    for (const [options, message] of bad) {
      const listener = new Recorder(rt);
      await assert.rejects(
        listener.init(testContext(rt, "named"), options),
        (error: unknown) =>
          error instanceof MetaraftError &&
          error.code === "MR_ERR_INVALID_ARGUMENT" &&
          /listener named: /.test(error.message) &&
          message.test(error.message),
        JSON.stringify(options),
      );
    }
  });

  it("a subclass's defaults() replace the table's, and the user's options replace both", async () => {
    const rt = new TestRuntime(() => 0.5);
    const ctx = testContext(rt);
    const listener = new Recorder(rt, { batch_events_max: 2 });
    await listener.init(ctx, {});
    ctx.ledgerMemory.append(...events(1, 3));
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    assert.deepEqual(listener.batches, [[1, 2], [3]]);
    const other = new Recorder(rt, { batch_events_max: 2 });
    const otherCtx = testContext(rt);
    await other.init(otherCtx, { batch_events_max: 3 });
    otherCtx.ledgerMemory.append(...events(1, 3));
    other.start();
    otherCtx.leadershipControl.lead(1);
    await rt.runUntil(20);
    assert.deepEqual(other.batches, [[1, 2, 3]]);
  });

  it("refuses to start before init, and after stop", async () => {
    const rt = new TestRuntime(() => 0.5);
    const listener = new Recorder(rt);
    assert.throws(() => listener.start(), /MR_ERR_INTERNAL.*before init/);
    await listener.init(testContext(rt), {});
    await listener.stop();
    assert.throws(() => listener.start(), /started after stop/);
  });

  it("an append announced while a read is under way is read next, not left to the poll", async () => {
    const { rt, ctx, listener } = await setup({ poll_ms: 60_000 });
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    ctx.ledgerMemory.duringRead = () => ctx.ledgerMemory.append(...events(1, 1));
    // Wake the idle loop for a read that will come back empty, with the append racing it.
    ctx.ledgerMemory.append();
    await rt.runUntil(20);
    assert.deepEqual(listener.delivered, [1]);
  });

  it("polls when no append is announced", async () => {
    const { rt, ctx, listener } = await setup({ poll_ms: 250 });
    listener.start();
    ctx.leadershipControl.lead(1);
    await rt.runUntil(10);
    // Appended without a notification (a lost one): found by the next poll.
    ctx.ledgerMemory.events.push(...events(1, 1));
    await rt.runUntil(249);
    assert.deepEqual(listener.delivered, []);
    await rt.runUntil(250);
    assert.deepEqual(listener.delivered, [1]);
  });
});
