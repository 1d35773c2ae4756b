import { randomFillSync } from "node:crypto";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Random bytes are drawn from a pool this large: one `randomFillSync` per 4 KiB, not one per id. */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = 0;

/**
 * `n` (at most 4096) cryptographically random bytes, for ids: a view of a
 * pool filled by the CSPRNG, never handed out twice (a refill allocates a
 * new pool, so earlier views stay valid).
 */
export function randomIdBytes(n: number): Buffer {
  if (used + n > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES));
    used = 0;
  }
  const bytes = pool.subarray(used, used + n);
  used += n;
  return bytes;
}

/** A new UUIDv7 (time-ordered): task, lease, event and session ids. */
export function uuidv7(nowMs = Date.now()): string {
  const b = randomIdBytes(16);
  b.writeUIntBE(nowMs, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** True for a canonical lower-case UUID of any version. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** True for a canonical lower-case UUIDv7. */
export function isUuidV7(value: string): boolean {
  return UUID_V7.test(value);
}
