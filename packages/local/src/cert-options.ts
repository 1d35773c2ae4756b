/** Options of {@link ensureMeshCerts} and {@link rotateMeshCerts}. */
export interface MeshCertOptions {
  /** How long a newly issued identity certificate is valid, in ms. @default 24 h */
  readonly leafValidityMs?: number;
  /** `ensure` renews an identity whose certificate ends within this many ms. @default 1 h */
  readonly renewBeforeMs?: number;
  /** The clock. @default the system clock */
  readonly now?: () => Date;
}

/** {@link MeshCertOptions} with every default filled in. */
export type CertConfig = Required<MeshCertOptions>;

/** Fills the defaults of {@link MeshCertOptions}. */
export function certConfig(options: MeshCertOptions): Readonly<CertConfig> {
  const config = { leafValidityMs: 24 * 3_600_000, renewBeforeMs: 3_600_000, now: () => new Date(), ...options };
  if (!(config.leafValidityMs > 0)) throw new Error(`leafValidityMs must be positive, got ${config.leafValidityMs}`);
  return Object.freeze(config);
}
