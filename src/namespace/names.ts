import { MetaraftError } from "../errors.js";

/**
 * Naming rules of the namespace. Volume and bucket names follow the S3 bucket naming rules, so
 * that a bucket can be served by an S3 gateway as it is; key names follow the S3 object key rules.
 * Every violation throws `MR_ERR_INVALID_NAME` with the rule and the field it broke.
 */

export const RESOURCE_NAME_LENGTH_MIN = 3;
export const RESOURCE_NAME_LENGTH_MAX = 63;
/** S3's limit on object keys, counted in UTF-8 bytes. */
export const KEY_NAME_BYTES_MAX = 1024;

const RESOURCE_NAME_CHARSET = /^[a-z0-9.-]+$/;
const ALNUM = /^[a-z0-9]$/;
/** Four dot-separated digit groups, the form S3 (and minio) refuse as "formatted as an IP address". */
const IPV4_FORM = /^(\d+\.){3}\d+$/;
const RESERVED_PREFIXES = ["xn--", "sthree-"] as const;
const RESERVED_SUFFIXES = ["-s3alias", "--ol-s3"] as const;

function invalid(field: string, rule: string): MetaraftError {
  return new MetaraftError("MR_ERR_INVALID_NAME", `${field} ${rule}`);
}

/**
 * The UTF-8 length of a JS string, or -1 if it holds a lone surrogate (which has no UTF-8
 * encoding: TextEncoder would silently turn it into U+FFFD and two names would collide).
 */
export function utf8Length(value: string): number {
  let bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = i + 1 < value.length ? value.charCodeAt(i + 1) : 0;
      if (!(next >= 0xdc00 && next <= 0xdfff)) return -1;
      bytes += 4;
      i++;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) return -1;
    else bytes += 3;
  }
  return bytes;
}

/** S3 bucket naming rules, checked in a fixed order so the message names the first rule broken. */
function checkResourceName(name: string, field: string): void {
  if (name.length < RESOURCE_NAME_LENGTH_MIN || name.length > RESOURCE_NAME_LENGTH_MAX) {
    throw invalid(
      field,
      `must be ${RESOURCE_NAME_LENGTH_MIN} to ${RESOURCE_NAME_LENGTH_MAX} characters long, not ${name.length}`,
    );
  }
  if (!RESOURCE_NAME_CHARSET.test(name)) {
    throw invalid(field, "may hold only lowercase letters, digits, hyphens and dots");
  }
  if (!ALNUM.test(name[0]!) || !ALNUM.test(name[name.length - 1]!)) {
    throw invalid(field, "must begin and end with a letter or a digit");
  }
  if (name.includes("..")) throw invalid(field, "must not hold two adjacent dots");
  if (IPV4_FORM.test(name)) throw invalid(field, "must not be formatted as an IPv4 address");
  for (const prefix of RESERVED_PREFIXES) {
    if (name.startsWith(prefix)) throw invalid(field, `must not begin with the reserved prefix ${prefix}`);
  }
  for (const suffix of RESERVED_SUFFIXES) {
    if (name.endsWith(suffix)) throw invalid(field, `must not end with the reserved suffix ${suffix}`);
  }
}

export function checkVolumeName(name: string, field = "volume"): void {
  checkResourceName(name, field);
}

export function checkBucketName(name: string, field = "bucket"): void {
  checkResourceName(name, field);
}

/** Non-empty, well-formed UTF-8 of at most 1,024 bytes, without NUL (the open-key separator). */
export function checkKeyName(key: string, field = "key"): void {
  if (key.length === 0) throw invalid(field, "must not be empty");
  const bytes = utf8Length(key);
  if (bytes < 0) throw invalid(field, "must be valid UTF-8 (it holds a lone surrogate)");
  if (key.includes("\u0000")) throw invalid(field, "must not hold the NUL character");
  if (bytes > KEY_NAME_BYTES_MAX) {
    throw invalid(field, `must be at most ${KEY_NAME_BYTES_MAX} bytes of UTF-8, not ${bytes}`);
  }
}
