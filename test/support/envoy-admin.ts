/** What a test reads from an Envoy's admin (`admin` is its base URL, `http://127.0.0.1:<port>`). */

/** A runtime key's value as the Envoy's layers resolve it (`GET /runtime`); undefined while no layer sets it. */
export async function runtimeValue(admin: string, key: string): Promise<string | undefined> {
  const body = (await (await fetch(`${admin}/runtime`)).json()) as { entries: Record<string, { final_value: string }> };
  return body.entries[key]?.final_value;
}

/** The sum of the counters whose names match `pattern` (a regular expression, as `/stats?filter=` takes it). */
export async function counterSum(admin: string, pattern: string): Promise<number> {
  const text = await (await fetch(`${admin}/stats?filter=${encodeURIComponent(pattern)}`)).text();
  return [...text.matchAll(/: (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}
