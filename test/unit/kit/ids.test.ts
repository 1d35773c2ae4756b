import { describe, expect, it } from "vitest";
import { isUuidV7, randomIdBytes, uuidv7 } from "../../../packages/kit/src/ids.js";

describe("ids", () => {
  it("uuidv7: canonical v7 ids, ordered by their time, never repeated across pool refills", () => {
    const ids = Array.from({ length: 2000 }, (_, i) => uuidv7(1_700_000_000_000 + i));
    expect(ids.every(isUuidV7)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(uuidv7(0x0123456789ab).startsWith("01234567-89ab-7")).toBe(true);
  });

  it("randomIdBytes: the length asked for, and views that a later draw never overwrites", () => {
    const first = randomIdBytes(16);
    const copy = Buffer.from(first);
    const later = Array.from({ length: 600 }, () => randomIdBytes(16)); // past one 4 KiB pool
    expect(first).toEqual(copy);
    expect(later.every((b) => b.length === 16)).toBe(true);
    expect(new Set([copy, ...later].map((b) => b.toString("hex"))).size).toBe(601);
    expect(randomIdBytes(8)).toHaveLength(8);
  });
});
