/**
 * The webhook receiver of bench:ledger, run as its own process (forked with an IPC channel) so
 * that it neither steals the load generator's event loop nor hides its own CPU: a node:http
 * server on 127.0.0.1:0 taking the webhook sink's native format (a JSON array of ledger
 * events) on one path per listener (`/l1`, `/l2`, ...). For every event it records, as it
 * arrives, the lag: receive time − `event.time` (the leader's time for the request), and it
 * counts events per path, distinct and duplicated (delivery is at least once).
 *
 * IPC: it sends `{ kind: "ready", port }` once listening; it answers `{ kind: "stats", id,
 * windowStart, windowEnd }` with `{ kind: "stats", id, paths, lag_us, ... }`, the lag taken
 * over the events whose `time` falls in [windowStart, windowEnd) (ms since the epoch).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { latencyHistogram, latencySummary } from "./common.js";

/** One request's body at most: the sink's default 1000 events are ~200 KiB. */
const BODY_BYTES_MAX = 64 * 1024 * 1024;
/** Events whose lag is recorded at most (two doubles each); more are counted, not recorded. */
const RECORDS_MAX = 8_000_000;
/** Paths (listeners) counted at most; a request to another path is refused. */
const PATHS_MAX = 64;

interface PathCount {
  requests: number;
  events: number;
  duplicates: number;
  /** Every event seen on this path, by txid, type and key (a txid may carry several events). */
  readonly seen: Set<string>;
}

const paths = new Map<string, PathCount>();
let times = new Float64Array(1 << 16);
let lags = new Float64Array(1 << 16);
let recorded = 0;
let unrecorded = 0;
let badRequests = 0;

function record(time: number, lagUs: number): void {
  if (recorded >= RECORDS_MAX) {
    unrecorded++;
    return;
  }
  if (recorded === times.length) {
    const grow = (a: Float64Array) => {
      const b = new Float64Array(Math.min(a.length * 2, RECORDS_MAX));
      b.set(a);
      return b;
    };
    times = grow(times);
    lags = grow(lags);
  }
  times[recorded] = time;
  lags[recorded] = lagUs;
  recorded++;
}

interface WireEvent {
  readonly txid?: unknown;
  readonly time?: unknown;
  readonly type?: unknown;
  readonly key?: unknown;
}

function refuse(res: ServerResponse, status: number): void {
  badRequests++;
  res.writeHead(status).end();
}

function onRequest(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url ?? "/";
  if (req.method !== "POST") {
    refuse(res, 405);
    return;
  }
  let count = paths.get(path);
  if (!count) {
    if (paths.size >= PATHS_MAX) {
      refuse(res, 404);
      return;
    }
    count = { requests: 0, events: 0, duplicates: 0, seen: new Set() };
    paths.set(path, count);
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  req.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes <= BODY_BYTES_MAX) chunks.push(chunk);
  });
  req.on("end", () => {
    // The lag ends when the whole request is here: fractional ms, on the same wall clock as
    // the leader's `time` (a whole ms, so a lag reads up to 1 ms long).
    const now = performance.timeOrigin + performance.now();
    if (bytes > BODY_BYTES_MAX) {
      refuse(res, 413);
      return;
    }
    let events: WireEvent[];
    try {
      events = JSON.parse(Buffer.concat(chunks).toString("utf8")) as WireEvent[];
      if (!Array.isArray(events)) throw new Error("not an array");
    } catch {
      refuse(res, 400);
      return;
    }
    count.requests++;
    for (const event of events) {
      if (typeof event.txid !== "number" || typeof event.time !== "number") {
        badRequests++;
        continue;
      }
      count.events++;
      const id = `${event.txid}|${String(event.type)}|${String(event.key ?? "")}`;
      if (count.seen.has(id)) {
        count.duplicates++;
        continue;
      }
      count.seen.add(id);
      record(event.time, Math.max(1, Math.round((now - event.time) * 1000)));
    }
    res.writeHead(200).end();
  });
}

interface StatsRequest {
  readonly kind: "stats";
  readonly id: number;
  readonly windowStart: number;
  readonly windowEnd: number;
}

function stats(request: StatsRequest) {
  const histogram = latencyHistogram();
  for (let i = 0; i < recorded; i++) {
    const t = times[i]!;
    if (t >= request.windowStart && t < request.windowEnd) histogram.recordValue(lags[i]!);
  }
  return {
    kind: "stats",
    id: request.id,
    paths: Object.fromEntries(
      [...paths].map(([path, c]) => [
        path,
        { requests: c.requests, events: c.events, distinct: c.seen.size, duplicates: c.duplicates },
      ]),
    ),
    /** Lag of every first delivery of an event written in the window, all paths together. */
    lag_us: { count: histogram.totalCount, ...latencySummary(histogram) },
    unrecorded,
    bad_requests: badRequests,
  };
}

const server = createServer({ keepAliveTimeout: 60_000 }, onRequest);
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the receiver has no port");
  process.send!({ kind: "ready", port: address.port });
});
process.on("message", (message: StatsRequest) => {
  if (message?.kind === "stats") process.send!(stats(message));
});
// The parent's end: stop with it rather than linger.
process.on("disconnect", () => process.exit(0));
