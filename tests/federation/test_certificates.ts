/**
 * A throwaway certificate authority for HTTPS tests: a CA and leaf certificates it signs, all
 * ECDSA P-256 through WebCrypto (@peculiar/x509 builds the DER), so tests need no openssl.
 * Servers take the leaf as TESSERA_TLS_CERT/TESSERA_TLS_KEY, clients trust the CA through
 * TESSERA_FEDERATION_CA_FILE. Synapse accepts such a leaf too (a CA-signed certificate, not a
 * self-signed one).
 */
// @peculiar/x509 resolves its ASN.1 codecs through tsyringe, which needs the Reflect polyfill
// loaded first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DAY_MS = 24 * 60 * 60 * 1000;

/** A PEM certificate and its PKCS#8 PEM private key. */
export interface CertifiedKey {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A test CA: its certificate, and a way to issue leaves signed by it. */
export interface TestCa {
  /** The CA certificate (PEM), to trust. */
  readonly caPem: string;
  /** A server certificate for these names (DNS names and IP addresses in subjectAltName). */
  issue(names: { dns?: string[]; ips?: string[] }): Promise<CertifiedKey>;
}

function randomSerial(): string {
  // Positive (top bit clear) 16-byte serial, as RFC 5280 asks.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;
  return bytes.toHex();
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
  const base64 = btoa(String.fromCharCode(...der)).replace(/(.{64})/g, "$1\n");
  return `-----BEGIN PRIVATE KEY-----\n${base64.trim()}\n-----END PRIVATE KEY-----\n`;
}

/** Make a fresh CA, valid from an hour ago for `days` days (default 7). */
export async function createTestCa(days = 7): Promise<TestCa> {
  const notBefore = new Date(Date.now() - 60 * 60 * 1000);
  const notAfter = new Date(Date.now() + days * DAY_MS);
  const caKeys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "CN=Tessera throwaway test CA",
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return {
    caPem: ca.toString("pem") + "\n",
    async issue({ dns = [], ips = [] }) {
      const keys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: `CN=${dns[0] ?? ips[0] ?? "tessera-test"}`,
        issuer: ca.subject,
        notBefore,
        notAfter,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: ALGORITHM,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([
            ...dns.map((value) => ({ type: "dns" as const, value })),
            ...ips.map((value) => ({ type: "ip" as const, value })),
          ]),
          await x509.AuthorityKeyIdentifierExtension.create(ca, false),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { certPem: leaf.toString("pem") + "\n", keyPem: await pkcs8Pem(keys.privateKey) };
    },
  };
}
