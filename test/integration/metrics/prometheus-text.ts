/** Fetches a Prometheus text page, failing on anything but 200. */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  return res.text();
}

/**
 * The value of the sample `name` whose labels are exactly `labels`, from a
 * Prometheus text page; undefined when there is none.
 */
export function sampleOf(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(",");
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = [...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}=${l[2]}`).sort().join(",");
    if (got === want) return Number(m[3]);
  }
  return undefined;
}
