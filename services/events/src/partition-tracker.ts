/**
 * The offsets of one partition that a subscription has taken from Kafka,
 * in order, each unsettled until acknowledged (or dead-lettered, or skipped
 * by the type filter). The group may commit only up to the oldest
 * unsettled one: everything before it is done.
 */
export class PartitionTracker {
  /** Taken offsets not yet committable, in increasing order. */
  readonly #entries: Array<{ offset: bigint; settled: boolean }> = [];
  #highest: bigint | undefined;
  /** The offset last committed for this partition by this subscription. */
  committed: bigint | undefined;

  /** The highest offset taken so far. */
  get highest(): bigint | undefined {
    return this.#highest;
  }

  /** How many taken offsets are still unsettled. */
  get unsettled(): number {
    return this.#entries.filter((e) => !e.settled).length;
  }

  /** True when `offset` was already taken (Kafka hands it out again after a rebalance). */
  taken(offset: bigint): boolean {
    return this.#highest !== undefined && offset <= this.#highest;
  }

  /**
   * Starts the partition at `offset` (a start position, or the end for a
   * group without a committed offset): earlier offsets count as taken, and
   * `offset` becomes the position to commit until something is delivered.
   */
  startFrom(offset: bigint): void {
    if (this.#highest !== undefined || this.#entries.length > 0) throw new Error("a partition starts only once");
    this.#highest = offset - 1n;
  }

  /** Takes the next offset; `settled` for one that needs no acknowledgement (filtered out). */
  take(offset: bigint, settled = false): void {
    if (this.taken(offset)) throw new Error(`offset ${offset} was already taken`);
    this.#highest = offset;
    this.#entries.push({ offset, settled });
    this.#trim();
  }

  /** Marks a taken offset settled; false when it is not pending here. */
  settle(offset: bigint): boolean {
    const entry = this.#entries.find((e) => e.offset === offset);
    if (!entry || entry.settled) return false;
    entry.settled = true;
    this.#trim();
    return true;
  }

  /** The offset to commit: the oldest unsettled one, else the one after the highest taken; undefined before any. */
  commitOffset(): bigint | undefined {
    const first = this.#entries[0];
    if (first) return first.offset;
    return this.#highest === undefined ? undefined : this.#highest + 1n;
  }

  /** True when there is something newer to commit than what was committed. */
  get dirty(): boolean {
    const next = this.commitOffset();
    return next !== undefined && next !== this.committed;
  }

  #trim(): void {
    while (this.#entries[0]?.settled) this.#entries.shift();
  }
}
