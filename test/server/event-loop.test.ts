import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventLoopMonitor } from "../../src/server/event-loop.js";

const BLOCK_MS = 150;
const RESOLUTION_MS = 10;

function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** Resolves after the monitor's timer has fired a few times (it fires every RESOLUTION_MS). */
async function samplesAtLeast(monitor: EventLoopMonitor, n: number): Promise<void> {
  while (monitor.read(false).samples < n) await new Promise((r) => setTimeout(r, RESOLUTION_MS));
}

describe("the event-loop monitor behind status.eventLoop", () => {
  it("shows a blocked loop in the window that holds it, and a reset starts a window without it", async () => {
    const monitor = new EventLoopMonitor(RESOLUTION_MS);
    try {
      await samplesAtLeast(monitor, 3);
      block(BLOCK_MS);
      await samplesAtLeast(monitor, 5);
      const stalled = monitor.read(true);
      assert.equal(stalled.window, 0);
      assert.equal(stalled.resolutionMs, RESOLUTION_MS);
      // The timer fired at most one resolution before the block began.
      assert.ok(stalled.delayMaxMs >= BLOCK_MS - RESOLUTION_MS, `delayMaxMs ${stalled.delayMaxMs}`);
      assert.ok(stalled.delayMaxMs < BLOCK_MS + 1000, `delayMaxMs ${stalled.delayMaxMs}`);

      await samplesAtLeast(monitor, 5);
      const quiet = monitor.read(false);
      assert.equal(quiet.window, 1);
      assert.ok(
        quiet.delayMaxMs < BLOCK_MS - RESOLUTION_MS,
        `after the reset: delayMaxMs ${quiet.delayMaxMs}`,
      );
      assert.ok(quiet.windowMs >= 0);
    } finally {
      monitor.close();
    }
  });

  it("refuses a resolution below 1 ms", () => {
    assert.throws(() => new EventLoopMonitor(0), RangeError);
  });
});
