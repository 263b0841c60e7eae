import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { MetaraftError } from "../../src/errors.js";
import {
  checkBucketName,
  checkKeyName,
  checkVolumeName,
  KEY_NAME_BYTES_MAX,
  utf8Length,
} from "../../src/namespace/index.js";

function rejects(check: () => void, words: RegExp): void {
  assert.throws(check, (error: unknown) => {
    assert.ok(error instanceof MetaraftError);
    assert.equal(error.code, "MR_ERR_INVALID_NAME");
    assert.match(error.message, words);
    return true;
  });
}

/** Each S3 bucket naming rule with names that keep it and names that break it. */
const rules: { rule: string; message: RegExp; valid: string[]; invalid: string[] }[] = [
  {
    rule: "3 to 63 characters",
    message: /3 to 63 characters/,
    valid: ["abc", "a".repeat(63), "a1b"],
    invalid: ["", "a", "ab", "a".repeat(64), "a".repeat(200)],
  },
  {
    rule: "lowercase letters, digits, hyphens and dots only",
    message: /lowercase letters, digits, hyphens and dots/,
    valid: ["my-bucket", "my.bucket", "0123", "a-b.c-d"],
    invalid: [
      "MyBucket",
      "my_bucket",
      "my bucket",
      "my/bucket",
      "bücket",
      "abc!",
      "ab\u0000c",
      "a\u{1f600}b",
    ],
  },
  {
    rule: "begins and ends with a letter or digit",
    message: /begin and end with a letter or a digit/,
    valid: ["1ab", "ab1", "a-1"],
    invalid: ["-abc", "abc-", ".abc", "abc.", "-a-"],
  },
  {
    rule: "no two adjacent dots",
    message: /two adjacent dots/,
    valid: ["a.b.c", "a-.b", "a.-b"],
    invalid: ["a..b", "my..bucket", "a...b"],
  },
  {
    rule: "not formatted as an IPv4 address",
    message: /IPv4 address/,
    valid: ["192.168.5", "192.168.5.4a", "a192.168.5.4", "1.2.3.4.5", "192-168-5-4"],
    invalid: ["192.168.5.4", "10.0.0.1", "999.999.999.999", "1.2.3.4"],
  },
  {
    rule: "no reserved prefix xn-- or sthree-",
    message: /reserved prefix/,
    valid: ["xn-a", "axn--b", "sthree", "sthreea", "asthree-b"],
    invalid: ["xn--abc", "xn--1", "sthree-abc", "sthree-configurator"],
  },
  {
    rule: "no reserved suffix -s3alias or --ol-s3",
    message: /reserved suffix/,
    valid: ["abc-s3alia", "s3alias", "abc-ol-s3", "abc--ol-s", "a-s3aliasb"],
    invalid: ["abc-s3alias", "abc--ol-s3", "x-s3alias"],
  },
];

describe("volume and bucket names (S3 bucket naming rules)", () => {
  for (const { rule, message, valid, invalid } of rules) {
    it(`${rule}: accepts the valid examples`, () => {
      for (const name of valid) {
        checkVolumeName(name);
        checkBucketName(name);
      }
    });
    it(`${rule}: refuses the invalid examples, naming the rule`, () => {
      for (const name of invalid) {
        rejects(() => checkVolumeName(name), message);
        rejects(() => checkBucketName(name), message);
      }
    });
  }

  it("names the field in the message", () => {
    rejects(() => checkVolumeName("A"), /\(volume must be/);
    rejects(() => checkBucketName("A"), /\(bucket must be/);
    rejects(() => checkBucketName("A", "toBucket"), /\(toBucket must be/);
  });

  it("accepts only names built from the allowed alphabet that keep every rule", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."ab9.-X_"), maxLength: 70 }), (name) => {
        let accepted = true;
        try {
          checkVolumeName(name);
        } catch (error) {
          assert.ok(error instanceof MetaraftError && error.code === "MR_ERR_INVALID_NAME");
          accepted = false;
        }
        const expected =
          name.length >= 3 &&
          name.length <= 63 &&
          /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name) &&
          !name.includes("..") &&
          !/^(\d+\.){3}\d+$/.test(name);
        assert.equal(accepted, expected, JSON.stringify(name));
      }),
      { numRuns: 500 },
    );
  });
});

describe("key names", () => {
  it("accepts keys of any characters but NUL, slashes and spaces included", () => {
    for (const key of [
      "a",
      "dir/sub/file.txt",
      "/leading",
      "trailing/",
      " ",
      "..",
      "日本語",
      "\u{1f600}",
      "a\tb",
    ]) {
      checkKeyName(key);
    }
  });

  it("refuses the empty key", () => {
    rejects(() => checkKeyName(""), /key must not be empty/);
  });

  it("refuses the NUL character", () => {
    rejects(() => checkKeyName("a\u0000b"), /key must not hold the NUL character/);
    rejects(() => checkKeyName("\u0000"), /NUL/);
  });

  it("refuses lone surrogates, which have no UTF-8 form", () => {
    for (const key of ["\ud800", "a\udc00", "\ud83d", "x\ude00y", "\udc00\ud800"]) {
      rejects(() => checkKeyName(key), /valid UTF-8/);
    }
    checkKeyName("\ud83d\ude00");
  });

  it("allows 1,024 UTF-8 bytes and refuses 1,025, counting multi-byte characters", () => {
    assert.equal(KEY_NAME_BYTES_MAX, 1024);
    const cases: [string, number][] = [
      ["a".repeat(1024), 1024],
      ["a".repeat(1025), 1025],
      ["é".repeat(512), 1024], // 2 bytes each
      [`${"é".repeat(512)}a`, 1025],
      [`${"€".repeat(341)}a`, 1024], // 3 bytes each
      [`${"€".repeat(341)}é`, 1025],
      ["\u{1f600}".repeat(256), 1024], // 4 bytes each, 2 UTF-16 units
      [`${"\u{1f600}".repeat(256)}a`, 1025],
    ];
    for (const [key, bytes] of cases) {
      assert.equal(Buffer.byteLength(key, "utf8"), bytes);
      if (bytes <= 1024) checkKeyName(key);
      else rejects(() => checkKeyName(key), /at most 1024 bytes of UTF-8, not 1025/);
    }
    // 512 UTF-16 units but 1,024 bytes, and 342 "€" are 342 units but 1,026 bytes.
    rejects(() => checkKeyName("€".repeat(342)), /not 1026/);
  });

  it("names the field", () => {
    rejects(() => checkKeyName("", "toKey"), /toKey must not be empty/);
  });

  it("utf8Length agrees with Buffer.byteLength on well-formed strings", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (text) => {
        assert.equal(utf8Length(text), Buffer.byteLength(text, "utf8"));
      }),
    );
  });
});
