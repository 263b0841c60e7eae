import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { formatLogLine } from "../../src/cli/dev-log.js";
import {
  DEFAULT_ENDPOINTS,
  parseEndpoints,
  probe,
  reaching,
  resolveClusterId,
  resolveEndpoints,
} from "../../src/cli/endpoints.js";
import { errorLine, exitCodeOf, table, usage } from "../../src/cli/output.js";
import { MetaraftError } from "../../src/errors.js";

describe("cli endpoints", () => {
  it("parses host:port lists, IPv6 in brackets", () => {
    assert.deepEqual(parseEndpoints(" a:1, 127.0.0.1:8002 ,[::1]:9", "--endpoints"), [
      { host: "a", port: 1 },
      { host: "127.0.0.1", port: 8002 },
      { host: "::1", port: 9 },
    ]);
  });

  it("rejects a bad endpoint as a usage error naming where it came from", () => {
    for (const bad of ["a", "a:", ":1", "a:0", "a:65536", "a:b", ","]) {
      assert.throws(
        () => parseEndpoints(bad, "METARAFT_ENDPOINTS"),
        (e: unknown) => exitCodeOf(e) === 2 && errorLine(e).includes("METARAFT_ENDPOINTS"),
        bad,
      );
    }
  });

  it("takes the flag over the environment over the default", () => {
    const env = { METARAFT_ENDPOINTS: "e:1", METARAFT_CLUSTER_ID: "from-env" };
    assert.deepEqual(resolveEndpoints("f:2", env), [{ host: "f", port: 2 }]);
    assert.deepEqual(resolveEndpoints(undefined, env), [{ host: "e", port: 1 }]);
    assert.deepEqual(resolveEndpoints(undefined, {}), parseEndpoints(DEFAULT_ENDPOINTS, "x"));
    assert.equal(resolveClusterId("flag", env), "flag");
    assert.equal(resolveClusterId(undefined, env), "from-env");
    assert.equal(resolveClusterId(undefined, {}), "metaraft-dev");
  });

  it("fails fast, in one line, when no endpoint accepts connections", async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    const down = { host: "127.0.0.1", port };
    assert.deepEqual(await probe(down, 1000), { up: false, reason: "connection refused" });
    const started = Date.now();
    await assert.rejects(
      reaching([down], 10_000, () => new Promise(() => {})),
      (e: unknown) =>
        e instanceof MetaraftError &&
        e.code === "MR_ERR_UNAVAILABLE" &&
        errorLine(e) ===
          `error: MR_ERR_UNAVAILABLE: no node could be reached (127.0.0.1:${port}: connection refused)`,
    );
    assert.ok(Date.now() - started < 2000);
  });
});

describe("cli output", () => {
  it("prints errors as one line with their code", () => {
    assert.equal(
      errorLine(new MetaraftError("MR_ERR_VOLUME_EXISTS", "volume v1")),
      "error: MR_ERR_VOLUME_EXISTS: the volume already exists (volume v1)",
    );
    assert.equal(errorLine(new Error("boom\nagain")), "error: MR_ERR_INTERNAL: boom again");
    assert.equal(exitCodeOf(new Error("x")), 1);
    assert.equal(exitCodeOf(usage("bad")), 2);
    assert.equal(errorLine(usage("bad")), "error: MR_ERR_USAGE: bad");
  });

  it("aligns columns; a short row's last cell does not widen its column", () => {
    assert.equal(
      table(
        ["A", "BB", "C"],
        [
          ["1", "2", "3"],
          ["longer", "unreachable (connection refused)"],
        ],
      ),
      "A       BB  C\n1       2   3\nlonger  unreachable (connection refused)",
    );
  });

  it("makes a node's JSON log line readable", () => {
    const line = JSON.stringify({
      level: 40,
      time: 1,
      pid: 2,
      hostname: "h",
      node: 1,
      peer: 2,
      err: { message: "gone" },
      msg: "peer lost",
    });
    assert.equal(formatLogLine(line), 'WARN peer lost peer=2 err="gone"');
    assert.equal(formatLogLine("plain text"), "plain text");
    assert.equal(formatLogLine("{not json"), "{not json");
  });
});
