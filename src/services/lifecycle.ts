import { MetaraftError } from "../errors.js";
import { decodeKeyInfo, keysPrefixOf } from "../namespace/index.js";
import type { Runtime, Timer } from "../runtime.js";
import { readServiceConfig } from "./config.js";
import { type StatefulParts, StatefulService } from "./stateful.js";

/**
 * The lifecycle service (S3 lifecycle expiration; Ozone's `KeyLifecycleService`): expires keys
 * by rules per bucket, a prefix and an age. It scans the buckets' keys a page per tick, saves
 * its scan position as replicated progress (a new leader resumes the scan, it does not start
 * it again), and hands the expired keys to a durable queue, whose handler deletes each through
 * the write path only if it still holds the object it was found with.
 */

export interface LifecycleRule {
  /** Keys starting with it ("" for every key). */
  readonly prefix: string;
  /** A key this long past its last commit (or rename) expires. */
  readonly expireAfterMs: number;
}

export interface LifecycleConfig {
  /** Rules by bucket, as `volume/bucket`. */
  readonly buckets: Readonly<Record<string, readonly LifecycleRule[]>>;
}

export interface LifecycleProgress {
  /** The bucket being scanned (`volume/bucket`), or null between passes. */
  readonly bucket: string | null;
  /** The last key of that bucket looked at. */
  readonly startAfter: string | null;
  /** Full passes over every bucket with rules. */
  readonly passes: number;
  /** Keys found expired and enqueued, all passes. */
  readonly enqueued: number;
  /** When the last pass ended (ms since the epoch; 0: none yet). */
  readonly passEndedAt: number;
  /** The txid of the configuration the current or last pass ran under: a newer one starts a pass at once. */
  readonly configTxid: number;
}

/** One expired key as the service enqueues it. */
export interface ExpiredKey {
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  readonly objectId: number;
}

/** Where the expired keys go: a durable queue whose handler deletes them (`expireKey`). */
export interface ExpiryQueue {
  add(keys: readonly ExpiredKey[]): Promise<void>;
  /** Called as the service starts on a new leader: resume consuming what earlier leaders enqueued. */
  resume?(): void;
}

export const LIFECYCLE_SERVICE = "lifecycle";
export const LIFECYCLE_BUCKETS_MAX = 1000;
export const LIFECYCLE_RULES_PER_BUCKET_MAX = 100;
const PREFIX_BYTES_MAX = 1024;

const EMPTY_PROGRESS: LifecycleProgress = {
  bucket: null,
  startAfter: null,
  passes: 0,
  enqueued: 0,
  passEndedAt: 0,
  configTxid: 0,
};

/** Checks an operator's configuration; the same on every node (no clock, no state). */
export function validateLifecycleConfig(raw: unknown): LifecycleConfig {
  const bad = (detail: string): MetaraftError =>
    new MetaraftError("MR_ERR_INVALID_ARGUMENT", `lifecycle: ${detail}`);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw bad("the configuration must be {buckets: {...}}");
  const buckets = (raw as { buckets?: unknown }).buckets ?? {};
  if (typeof buckets !== "object" || buckets === null || Array.isArray(buckets))
    throw bad("buckets must be a map");
  const entries = Object.entries(buckets as Record<string, unknown>);
  if (entries.length > LIFECYCLE_BUCKETS_MAX)
    throw bad(`at most ${LIFECYCLE_BUCKETS_MAX} buckets have rules`);
  const out: Record<string, LifecycleRule[]> = {};
  for (const [bucket, rules] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw bad(`${JSON.stringify(bucket)} is not volume/bucket`);
    }
    if (!Array.isArray(rules) || rules.length === 0 || rules.length > LIFECYCLE_RULES_PER_BUCKET_MAX) {
      throw bad(`${bucket}: 1 to ${LIFECYCLE_RULES_PER_BUCKET_MAX} rules`);
    }
    out[bucket] = rules.map((rule: unknown, i) => {
      const r = rule as Partial<LifecycleRule>;
      if (typeof r !== "object" || r === null)
        throw bad(`${bucket} rule ${i} must be {prefix, expireAfterMs}`);
      const prefix = r.prefix ?? "";
      if (typeof prefix !== "string" || Buffer.byteLength(prefix) > PREFIX_BYTES_MAX) {
        throw bad(`${bucket} rule ${i}: prefix must be a string of at most ${PREFIX_BYTES_MAX} bytes`);
      }
      const age = r.expireAfterMs;
      if (typeof age !== "number" || !Number.isSafeInteger(age) || age < 0) {
        throw bad(`${bucket} rule ${i}: expireAfterMs must be a non-negative integer`);
      }
      return { prefix, expireAfterMs: age };
    });
  }
  return { buckets: out };
}

/** The pace: `lifecycle.*` settings (a page of `pageKeys` per `tickMs` bounds the work per tick). */
export interface LifecycleOptions {
  readonly runtime: Runtime;
  readonly queue: ExpiryQueue;
  readonly tickMs: number;
  readonly pageKeys: number;
  readonly passIntervalMs: number;
}

export class LifecycleService extends StatefulService<LifecycleConfig, LifecycleProgress> {
  readonly name = LIFECYCLE_SERVICE;
  readonly #options: LifecycleOptions;
  #timer: Timer | undefined;
  #running = false;
  /** A tick in progress (its enqueue and progress save); stop waits for it. */
  #tick: Promise<void> | undefined;
  #progress: LifecycleProgress = EMPTY_PROGRESS;
  #lastActiveAt: number | undefined;

  constructor(parts: StatefulParts, options: LifecycleOptions) {
    super(parts);
    this.#options = options;
  }

  validateConfiguration(config: unknown): LifecycleConfig {
    return validateLifecycleConfig(config);
  }

  start(): void {
    // The replicated position: a new leader goes on from where the last one saved.
    this.#progress = { ...EMPTY_PROGRESS, ...this.readProgress() };
    this.#options.queue.resume?.();
    this.#running = true;
    this.#timer = this.#options.runtime.every(this.#options.tickMs, () => {
      if (this.#tick || !this.#running) return;
      this.#tick = this.#step()
        .catch((error: unknown) => {
          this.lastError = error instanceof Error ? error.message : String(error);
        })
        .finally(() => {
          this.#tick = undefined;
        });
    });
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#timer?.cancel();
    this.#timer = undefined;
    await this.#tick;
  }

  override report() {
    return {
      ...super.report(),
      ...(this.#lastActiveAt === undefined ? {} : { lastActiveAt: this.#lastActiveAt }),
    };
  }

  /** One tick: at most one page of one bucket; the expired keys enqueued, then the position saved. */
  async #step(): Promise<void> {
    const now = this.#options.runtime.now();
    this.#lastActiveAt = now;
    const config = this.readConfiguration();
    const buckets = Object.keys(config?.buckets ?? {}).sort();
    if (buckets.length === 0) return;
    let p = this.#progress;
    const configTxid = readServiceConfig(this.parts.reader, this.name)?.changedTxid ?? 0;
    if (p.bucket === null) {
      const rested = p.passEndedAt === 0 || now - p.passEndedAt >= this.#options.passIntervalMs;
      if (!rested && configTxid <= p.configTxid) return;
      p = { ...p, bucket: buckets[0]!, startAfter: null, configTxid };
    } else if (!buckets.includes(p.bucket)) {
      // Its rules were removed mid-scan: on to the next bucket in order.
      const next = buckets.find((b) => b > p.bucket!);
      p = next === undefined ? this.#passEnded(p, now) : { ...p, bucket: next, startAfter: null };
      if (p.bucket === null) return this.#save(p);
    }
    const bucket = p.bucket!;
    const rules = config!.buckets[bucket]!;
    const [volume, bucketName] = bucket.split("/") as [string, string];
    const prefix = keysPrefixOf(volume, bucketName);
    const rows = this.parts.reader.scan(
      "keys",
      prefix,
      p.startAfter === null ? undefined : prefix + p.startAfter,
      this.#options.pageKeys,
    );
    const expired: ExpiredKey[] = [];
    for (const row of rows) {
      const info = decodeKeyInfo(row.value);
      if (rules.some((r) => info.key.startsWith(r.prefix) && now - info.modifiedAt >= r.expireAfterMs)) {
        expired.push({ volume, bucket: bucketName, key: info.key, objectId: info.objectId });
      }
    }
    if (expired.length > 0) await this.#options.queue.add(expired);
    const enqueued = p.enqueued + expired.length;
    if (rows.length < this.#options.pageKeys) {
      const next = buckets.find((b) => b > bucket);
      p =
        next === undefined
          ? this.#passEnded({ ...p, enqueued }, now)
          : { ...p, enqueued, bucket: next, startAfter: null };
    } else {
      p = { ...p, enqueued, startAfter: decodeKeyInfo(rows.at(-1)!.value).key };
    }
    await this.#save(p);
  }

  #passEnded(p: LifecycleProgress, now: number): LifecycleProgress {
    return { ...p, bucket: null, startAfter: null, passes: p.passes + 1, passEndedAt: now };
  }

  async #save(p: LifecycleProgress): Promise<void> {
    this.#progress = p;
    await this.saveProgress(p);
  }
}
