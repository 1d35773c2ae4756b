/** `--replicas config=2,worker=3`: replicas per service, 1..16 each. */
export function parseReplicas(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(",").filter(Boolean)) {
    const m = /^([a-z][a-z0-9-]*)=(\d+)$/.exec(part.trim());
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 16) throw new Error(`--replicas: expected name=N (1..16) pairs, got ${JSON.stringify(part)}`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}
