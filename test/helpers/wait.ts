/** Polls `predicate` until it holds, or fails naming `what` after `ms`: tests wait on conditions, not sleeps. */
export async function waitFor(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  ms = 15_000,
  pollMs = 20,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
