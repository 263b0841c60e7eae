// The registry mirror here has no builds of some optional per-platform packages (biome,
// msgpackr-extract for darwin, win32, android, musl), so `npm install` leaves them out of the
// lock file and `npm ci` then refuses the lock. This adds a lock entry for each missing
// optional platform package, with the os/cpu/libc that make npm skip it on every other
// platform. Run it after changing dependencies: `node scripts/lock-optional-platforms.mjs`.
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const packages = lock.packages;
let added = 0;

function platformOf(name) {
  const os = ["android", "darwin", "win32", "linux", "freebsd"].find((o) => name.includes(`-${o}`));
  const cpu = ["arm64", "x64", "arm", "ia32"].find((c) => new RegExp(`-${c}(-|$)`).test(name));
  return { os, cpu, musl: name.includes("-musl") };
}

for (const [where, info] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(info.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    const nested = `${where}/node_modules/${name}`;
    if (packages[key] || packages[nested]) continue;
    const { os, cpu, musl } = platformOf(name);
    if (!os || !cpu) continue;
    packages[key] = {
      version: version.replace(/^[\^~]/, ""),
      ...(info.dev ? { dev: true } : {}),
      optional: true,
      os: [os],
      cpu: [cpu],
      ...(musl ? { libc: ["musl"] } : {}),
    };
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
);
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} optional platform entries`);
