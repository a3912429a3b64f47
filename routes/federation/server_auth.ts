/**
 * Inbound request authentication for the Server-Server API: every request carries an
 * `Authorization: X-Matrix ...` header whose signature covers the method, the URI, the origin,
 * our server name and the JSON body. `serverAuth(deps)` verifies it with the origin's key from
 * the key ring and answers 401 M_UNAUTHORIZED otherwise (400 M_UNAUTHORIZED for a malformed
 * header, as Synapse does); routes then ask `originOf(c)` who
 * called and `signedContent(c)` for the body that was verified (read once, here).
 */
import type { Context, MiddlewareHandler } from "hono";
import { z } from "zod";
import { MatrixError } from "../../domain/errors.ts";
import type { JsonValue } from "../../domain/protocol/json.ts";
import type { KeyRing } from "../../domain/federation/key_ring.ts";
import { parseXMatrix, verifyRequestSignature } from "../../domain/federation/request_auth.ts";
import { parseServerName } from "../../domain/protocol/identifiers.ts";
import { readJsonBody } from "../json_body.ts";

/**
 * Largest federation request body: a transaction holds up to 50 PDUs of 64 KiB and 100 EDUs,
 * so the client API's 1 MiB is too small. Routes reading the body again pass this limit.
 */
export const MAX_FEDERATION_BODY_BYTES = 8 * 1024 * 1024;

/** What request authentication needs. */
export interface ServerAuthDeps {
  readonly config: { readonly serverName: string };
  /** The origin's public keys (part 2's key ring). */
  readonly keyRing: KeyRing;
  readonly now?: () => number;
  /** Called once per verified request with its origin (the sender resets its backoff). */
  readonly onInboundServerRequest?: (origin: string) => void | Promise<void>;
}

/** What a verified request established. */
interface VerifiedRequest {
  readonly origin: string;
  readonly content: JsonValue | undefined;
}

// Keyed by the raw Request, so sub-apps and their parent see the same verification.
const verified = new WeakMap<Request, VerifiedRequest>();

const unauthorized = (message: string) => new MatrixError("M_UNAUTHORIZED", 401, message);

/**
 * Hono middleware verifying the X-Matrix signature of each request; a request already
 * verified (the middleware mounted at two levels) is not checked twice.
 */
export function serverAuth(deps: ServerAuthDeps): MiddlewareHandler {
  return async (c, next) => {
    if (!verified.has(c.req.raw)) {
      verified.set(c.req.raw, await verify(c, deps));
      try {
        await deps.onInboundServerRequest?.(verified.get(c.req.raw)!.origin);
      } catch (error) {
        // The request itself is fine; the hook's failure must not fail it.
        console.warn("federation: inbound request hook failed", error);
      }
    }
    await next();
  };
}

async function verify(c: Context, deps: ServerAuthDeps): Promise<VerifiedRequest> {
  const header = c.req.header("authorization");
  if (header === undefined || !/^\s*x-matrix\s/i.test(header)) {
    throw unauthorized("Missing X-Matrix Authorization header");
  }
  // A malformed header, or one naming an invalid origin, is a bad request (400, as Synapse
  // answers and SyTest expects), still with errcode M_UNAUTHORIZED.
  const auth = parseXMatrix(header);
  if (auth === null || !parseServerName(auth.origin).ok) {
    throw new MatrixError("M_UNAUTHORIZED", 400, "Malformed X-Matrix Authorization header");
  }
  const us = deps.config.serverName;
  if (auth.destination !== undefined && auth.destination !== us) {
    throw unauthorized(`Request is addressed to ${auth.destination}, not to this server`);
  }
  const content = await readContent(c);
  const now = deps.now?.() ?? Date.now();
  let publicKey: Uint8Array | undefined;
  try {
    publicKey = await deps.keyRing.verifyKey(auth.origin, auth.key, now);
  } catch (error) {
    console.warn("federation: key lookup failed", auth.origin, auth.key, error);
    publicKey = undefined;
  }
  if (publicKey === undefined) {
    throw unauthorized(`No valid key ${auth.key} of ${auth.origin} could be found`);
  }
  const url = new URL(c.req.url);
  const ok = await verifyRequestSignature(auth, {
    method: c.req.method,
    uri: url.pathname + url.search,
    destination: us,
    ...(content !== undefined ? { content } : {}),
  }, publicKey);
  if (!ok) throw unauthorized(`Invalid signature from ${auth.origin} with ${auth.key}`);
  return { origin: auth.origin, content };
}

/** The JSON body, or undefined when there is none (the signature then covers no `content`). */
async function readContent(c: Context): Promise<JsonValue | undefined> {
  // GET requests carry no content to sign; a PUT or POST without a body is told apart below.
  if (c.req.method === "GET" || c.req.method === "HEAD") return undefined;
  // Read (size-checked, parsed, depth-checked) and cached by readJsonBody, so the route's own
  // read sees the same bytes; an empty body parses as {} here and is told apart below.
  const parsed = await readJsonBody(c, z.unknown(), {
    maxBytes: MAX_FEDERATION_BODY_BYTES,
    emptyAsObject: true,
  });
  const cached = (c.req.bodyCache as { arrayBuffer?: Promise<ArrayBuffer> }).arrayBuffer;
  const bytes = cached === undefined ? new ArrayBuffer(0) : await cached;
  if (new TextDecoder().decode(bytes).trim() === "") return undefined;
  return parsed as JsonValue;
}

/** The server that signed this request; only valid behind `serverAuth`. */
export function originOf(c: Context): string {
  const request = verified.get(c.req.raw);
  if (request === undefined) throw new Error("originOf called on a route without serverAuth");
  return request.origin;
}

/** The verified JSON body of this request (undefined without one); only behind `serverAuth`. */
export function signedContent(c: Context): JsonValue | undefined {
  const request = verified.get(c.req.raw);
  if (request === undefined) throw new Error("signedContent called on a route without serverAuth");
  return request.content;
}
