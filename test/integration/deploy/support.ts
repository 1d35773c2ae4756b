import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * A throwaway CA (`ca.crt`) and one identity's key pair (`tls.crt`,
 * `tls.key`, SPIFFE URI SAN) in `certsDir`, named as cert-manager names a
 * Secret's keys: what a container's certificate folder holds.
 */
export function makeTestCerts(certsDir: string, identity: string): void {
  mkdirSync(certsDir, { recursive: true });
  const openssl = (...args: string[]): void => void execFileSync("openssl", args, { cwd: certsDir, stdio: "pipe" });
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
    "-days", "1", "-subj", "/CN=taskmesh test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  writeFileSync(join(certsDir, "ext.cnf"), `subjectAltName=URI:spiffe://taskmesh.local/${identity}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n`);
  openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", `/CN=${identity}`);
  openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt", "-days", "1", "-extfile", "ext.cnf");
}
