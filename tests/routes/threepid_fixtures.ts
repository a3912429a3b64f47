/**
 * Outside servers for the 3PID tests, both real and on loopback: an SMTP server (the
 * smtp-server package from npm) that keeps what it receives, and an identity server speaking
 * the Identity Service API v2 over HTTPS, with the self-signed certificate SyTest's identity
 * server uses (so the tests cross the same TLS path, `TESSERA_OUTBOUND_TLS_VERIFY=off`).
 */
import { SMTPServer } from "smtp-server";
import type { AddressInfo } from "node:net";
import { encodeBase64Unpadded, encodeBase64UrlUnpadded } from "../../domain/protocol/base64.ts";
import { type SigningKey, signingKeyFromSeed, signJson } from "../../domain/protocol/signing.ts";

/** One received message: its recipients, raw text and decoded plain-text body. */
export interface ReceivedMail {
  to: string[];
  raw: string;
  text: string;
}

/** A running SMTP server collecting mail. */
export interface Mailbox {
  port: number;
  mails: ReceivedMail[];
  /** The next mail to `address` (already received or still to come). */
  nextMailTo(address: string): Promise<ReceivedMail>;
  close(): Promise<void>;
}

/** Decode a quoted-printable body (soft line breaks and =XX escapes). */
function decodeQuotedPrintable(body: string): string {
  const bytes = body.replace(/=\r?\n/g, "").replace(
    /=([0-9A-F]{2})/g,
    (_, hex) => String.fromCharCode(parseInt(hex, 16)),
  );
  return new TextDecoder().decode(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
}

/** The plain-text body of a single-part message. */
function plainText(raw: string): string {
  const split = raw.indexOf("\r\n\r\n");
  const headers = raw.slice(0, split);
  const body = raw.slice(split + 4);
  return /content-transfer-encoding:\s*quoted-printable/i.test(headers)
    ? decodeQuotedPrintable(body)
    : body;
}

/** Start an SMTP server on 127.0.0.1 (no TLS, no auth) that stores every message. */
export async function startMailbox(): Promise<Mailbox> {
  const mails: ReceivedMail[] = [];
  const seen = new Set<ReceivedMail>();
  const waiters: { address: string; resolve: (mail: ReceivedMail) => void }[] = [];
  const deliver = (mail: ReceivedMail) => {
    mails.push(mail);
    const i = waiters.findIndex((w) => mail.to.includes(w.address));
    if (i !== -1) {
      seen.add(mail);
      waiters.splice(i, 1)[0].resolve(mail);
    }
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Uint8Array[] = [];
      stream.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      stream.on("end", () => {
        const raw = new TextDecoder().decode(
          chunks.reduce((all, c) => {
            const next = new Uint8Array(all.length + c.length);
            next.set(all);
            next.set(c, all.length);
            return next;
          }, new Uint8Array()),
        );
        const to = session.envelope.rcptTo.map((r) => r.address);
        deliver({ to, raw, text: plainText(raw) });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    mails,
    nextMailTo(address) {
      const waiting = mails.find((m) => m.to.includes(address) && !seen.has(m));
      if (waiting) {
        seen.add(waiting);
        return Promise.resolve(waiting);
      }
      return new Promise((resolve) => waiters.push({ address, resolve }));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The path and query of the first http(s) link in a mail (as SyTest finds it). */
export function linkIn(mail: ReceivedMail): string {
  const match = /(https?:\/\/\S+)/.exec(mail.text);
  if (!match) throw new Error(`no link in mail: ${mail.text}`);
  const url = new URL(match[1]);
  return url.pathname + url.search;
}

/** A request the identity server received. */
export interface IdentityRequest {
  method: string;
  path: string;
  authorization: string | null;
  body: Record<string, unknown> | null;
}

/** A running identity server. */
export interface FakeIdentityServer {
  /** `127.0.0.1:port`, as clients name it in `id_server`. */
  name: string;
  accessToken: string;
  requests: IdentityRequest[];
  /** Validate an address out of band (what the identity server's own mail would do). */
  validate(medium: string, address: string): string;
  /** Bind out of band. */
  bindDirectly(medium: string, address: string, mxid: string): void;
  lookup(medium: string, address: string): string | undefined;
  /** Invites stored with store-invite. */
  invites: { medium: string; address: string; room_id: string; sender: string; token: string }[];
  /** Sign JSON with the long-term key (or the ephemeral one). */
  sign<T extends object>(obj: T, ephemeral?: boolean): Promise<T>;
  /** Make every current key invalid (`/pubkey/isvalid` says false). */
  revokeKeys(): void;
  close(): Promise<void>;
}

const CERT_DIR = new URL("../../../shared/sytest/harness/sytest/keys/", import.meta.url);
const PEPPER = "matrixrocks";

async function sha256Url(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return encodeBase64UrlUnpadded(new Uint8Array(digest));
}

/** Start an HTTPS identity server on 127.0.0.1 that accepts `accessToken` as Bearer. */
export async function startIdentityServer(): Promise<FakeIdentityServer> {
  const accessToken = "swordfish";
  const key: SigningKey = await signingKeyFromSeed(
    crypto.getRandomValues(new Uint8Array(32)),
    "ed25519:0",
  );
  const ephemeral: SigningKey = await signingKeyFromSeed(
    crypto.getRandomValues(new Uint8Array(32)),
    "ed25519:0",
  );
  let validKeys = new Set([key.publicKey, ephemeral.publicKey].map(encodeBase64Unpadded));
  const requests: IdentityRequest[] = [];
  const validated = new Map<string, { medium: string; address: string }>();
  const bindings = new Map<string, string>();
  const invites: FakeIdentityServer["invites"] = [];
  let nextSid = 0;
  let nextToken = 0;
  let name = "";
  const json = (body: unknown, status = 200) => Response.json(body, { status });

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(new URL("tls-selfsigned.crt", CERT_DIR)),
    key: await Deno.readTextFile(new URL("tls-selfsigned.key", CERT_DIR)),
    onListen() {},
  }, async (req) => {
    const url = new URL(req.url);
    const text = await req.text();
    const body = text === "" ? null : JSON.parse(text);
    requests.push({
      method: req.method,
      path: url.pathname,
      authorization: req.headers.get("authorization"),
      body,
    });
    const bearer = req.headers.get("authorization") === `Bearer ${accessToken}`;
    const path = url.pathname;
    if (path === "/_matrix/identity/v2/pubkey/isvalid") {
      return json({ valid: validKeys.has(url.searchParams.get("public_key") ?? "") });
    }
    if (path === "/_matrix/identity/v2/3pid/unbind") {
      const k = `${body.threepid.medium}\u0000${body.threepid.address}`;
      if (bindings.get(k) !== body.mxid) return json({ errcode: "M_NOT_FOUND" }, 404);
      bindings.delete(k);
      return json({});
    }
    if (!bearer) return json({ errcode: "M_UNAUTHORIZED", error: "no token" }, 401);
    if (path === "/_matrix/identity/v2/hash_details") {
      return json({ lookup_pepper: PEPPER, algorithms: ["none", "sha256"] });
    }
    if (path === "/_matrix/identity/v2/lookup") {
      const mappings: Record<string, string> = {};
      for (const [k, mxid] of bindings) {
        const [medium, address] = k.split("\u0000");
        if (body.algorithm === "sha256") {
          const hash = await sha256Url(`${address} ${medium} ${PEPPER}`);
          if (body.addresses.includes(hash)) mappings[hash] = mxid;
        }
      }
      return json({ mappings });
    }
    if (path === "/_matrix/identity/v2/3pid/bind") {
      const session = validated.get(body.sid);
      if (!session) return json({ errcode: "M_NO_VALID_SESSION", error: "unknown sid" }, 400);
      bindings.set(`${session.medium}\u0000${session.address}`, body.mxid);
      return json(
        await signJson(
          { ...session, mxid: body.mxid, not_before: 0, not_after: 1e13, ts: 0 },
          name,
          key,
        ),
      );
    }
    if (path === "/_matrix/identity/v2/store-invite") {
      const token = `tok${nextToken++}`;
      invites.push({ ...body, token });
      const keyValidityUrl = `https://${name}/_matrix/identity/v2/pubkey/isvalid`;
      return json({
        token,
        display_name: "Bob",
        public_key: encodeBase64Unpadded(key.publicKey),
        public_keys: [
          { public_key: encodeBase64Unpadded(key.publicKey), key_validity_url: keyValidityUrl },
          {
            public_key: encodeBase64Unpadded(ephemeral.publicKey),
            key_validity_url: keyValidityUrl,
          },
        ],
      });
    }
    return json({ errcode: "M_UNRECOGNIZED" }, 404);
  });
  name = `127.0.0.1:${server.addr.port}`;
  return {
    name,
    accessToken,
    requests,
    invites,
    validate(medium, address) {
      const sid = `session_${nextSid++}`;
      validated.set(sid, { medium, address });
      return sid;
    },
    bindDirectly(medium, address, mxid) {
      bindings.set(`${medium}\u0000${address}`, mxid);
    },
    lookup: (medium, address) => bindings.get(`${medium}\u0000${address}`),
    sign: (obj, eph = false) => signJson(obj, name, eph ? ephemeral : key) as Promise<typeof obj>,
    revokeKeys() {
      validKeys = new Set();
    },
    close: () => server.shutdown(),
  };
}
