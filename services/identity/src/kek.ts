import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const NONCE = 12;
const TAG = 16;

/**
 * Encrypts a signing key's private part (PKCS#8 DER) under the
 * key-encryption key with AES-256-GCM, bound to its kid (associated data),
 * so a ciphertext cannot be moved to another key's row. Returns nonce ‖ tag ‖ ciphertext.
 */
export function sealPrivateKey(kek: Buffer, kid: string, plaintext: Buffer): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", kek, nonce);
  cipher.setAAD(Buffer.from(kid, "utf8"));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, cipher.getAuthTag(), body]);
}

/** Decrypts what {@link sealPrivateKey} sealed; throws when the key-encryption key or the kid is wrong. */
export function openPrivateKey(kek: Buffer, kid: string, sealed: Buffer): Buffer {
  const decipher = createDecipheriv("aes-256-gcm", kek, sealed.subarray(0, NONCE));
  decipher.setAAD(Buffer.from(kid, "utf8"));
  decipher.setAuthTag(sealed.subarray(NONCE, NONCE + TAG));
  return Buffer.concat([decipher.update(sealed.subarray(NONCE + TAG)), decipher.final()]);
}
