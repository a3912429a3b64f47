/**
 * The one way out to servers users name (push gateways, identity servers): a fetch that
 * refuses hosts resolving to private, loopback, link-local, unique-local, multicast, reserved
 * or unspecified addresses (so a user cannot make the server probe its own network), and bounds
 * each request by time and response size. `TESSERA_OUTBOUND_ALLOW_PRIVATE=on` lifts the address
 * check for tests and private deployments.
 *
 * Limit: the host is resolved here and again by fetch, so a DNS answer that changes between
 * the two (rebinding with a zero TTL) can slip through; redirects are never followed, so a
 * public server cannot bounce the request inwards.
 */
import { readStreamUpTo } from "../domain/bytes.ts";
import {
  OutboundError,
  type OutboundHttp,
  type OutboundRequest,
  type OutboundResponse,
} from "../domain/ports/outbound_http.ts";

/** What kind of address an IP is; everything but "public" is refused by default. */
export type AddressClass =
  | "public"
  | "unspecified"
  | "loopback"
  | "private"
  | "shared"
  | "link_local"
  | "unique_local"
  | "site_local"
  | "multicast"
  | "broadcast"
  | "reserved"
  | "documentation";

/** Parse a dotted-quad IPv4 address in its canonical form; null for anything else. */
export function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    // Leading zeros are refused: some resolvers read them as octal.
    if (!/^(0|[1-9]\d{0,2})$/.test(parts[i])) return null;
    const n = Number(parts[i]);
    if (n > 255) return null;
    bytes[i] = n;
  }
  return bytes;
}

/** Parse an IPv6 address (with `::`, an embedded IPv4 tail, or a zone) into 16 bytes. */
export function parseIpv6(text: string): Uint8Array | null {
  const zone = text.indexOf("%");
  const address = zone === -1 ? text : text.slice(0, zone);
  if (address.length === 0 || address.length > 45) return null;
  const halves = address.split("::");
  if (halves.length > 2) return null;
  const groups = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (v4 === null) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  // An embedded IPv4 may only end the address.
  if (halves.length === 2 && halves[0].includes(".")) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...new Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** True when the first `bits` bits of `bytes` equal those of `prefix`. */
function inPrefix(bytes: Uint8Array, prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if ((bytes[byte] & mask) !== ((prefix[byte] ?? 0) & mask)) return false;
  }
  return true;
}

// Ranges from the IANA special-purpose registries (RFC 6890 and successors), as Synapse's
// recommended ip_range_blacklist lists them, plus the unspecified and broadcast addresses.
const IPV4_RANGES: ReadonlyArray<readonly [number[], number, AddressClass]> = [
  [[0, 0, 0, 0], 8, "unspecified"],
  [[10], 8, "private"],
  [[100, 64], 10, "shared"],
  [[127], 8, "loopback"],
  [[169, 254], 16, "link_local"],
  [[172, 16], 12, "private"],
  [[192, 0, 0], 24, "reserved"],
  [[192, 0, 2], 24, "documentation"],
  [[192, 88, 99], 24, "reserved"],
  [[192, 168], 16, "private"],
  [[198, 18], 15, "reserved"],
  [[198, 51, 100], 24, "documentation"],
  [[203, 0, 113], 24, "documentation"],
  [[224], 4, "multicast"],
  [[255, 255, 255, 255], 32, "broadcast"],
  [[240], 4, "reserved"],
];

/** Classify an IPv4 address given as 4 bytes. */
export function classifyIpv4(bytes: Uint8Array): AddressClass {
  for (const [prefix, bits, kind] of IPV4_RANGES) {
    if (inPrefix(bytes, prefix, bits)) return kind;
  }
  return "public";
}

const IPV6_RANGES: ReadonlyArray<readonly [number[], number, AddressClass]> = [
  [[], 128, "unspecified"],
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"],
  [[0x01, 0x00, 0, 0, 0, 0, 0, 0], 64, "reserved"], // discard-only 100::/64
  [[0x20, 0x01, 0x0d, 0xb8], 32, "documentation"],
  [[0xfc], 7, "unique_local"],
  [[0xfe, 0x80], 10, "link_local"],
  [[0xfe, 0xc0], 10, "site_local"],
  [[0xff], 8, "multicast"],
];

/**
 * Classify an IPv6 address given as 16 bytes. Forms that carry an IPv4 address (mapped
 * `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are
 * classified by the IPv4 address they reach.
 */
export function classifyIpv6(bytes: Uint8Array): AddressClass {
  for (const [prefix, bits, kind] of IPV6_RANGES) {
    if (inPrefix(bytes, prefix, bits)) return kind;
  }
  const zeros = new Array(10).fill(0);
  if (inPrefix(bytes, [...zeros, 0xff, 0xff], 96) || inPrefix(bytes, [], 96)) {
    return classifyIpv4(bytes.slice(12));
  }
  if (inPrefix(bytes, [0x00, 0x64, 0xff, 0x9b], 96)) return classifyIpv4(bytes.slice(12));
  if (inPrefix(bytes, [0x20, 0x02], 16)) return classifyIpv4(bytes.slice(2, 6));
  return "public";
}

/** Classify an IP address in text (IPv6 with or without brackets); null when not an IP. */
export function classifyAddress(text: string): AddressClass | null {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const v4 = parseIpv4(bare);
  if (v4 !== null) return classifyIpv4(v4);
  const v6 = bare.includes(":") ? parseIpv6(bare) : null;
  return v6 === null ? null : classifyIpv6(v6);
}

/** Settings of the guard; the defaults suit push gateways and identity servers. */
export interface GuardedFetchOptions {
  /** Let requests reach private and local addresses (TESSERA_OUTBOUND_ALLOW_PRIVATE). */
  allowPrivate: boolean;
  /** Whole request, connection to last body byte; default 10 s. */
  timeoutMs?: number;
  /** Largest response body accepted; default 1 MiB. */
  maxResponseBytes?: number;
  /** Resolves a host name to its addresses; default Deno.resolveDns (A and AAAA). */
  resolve?: (host: string) => Promise<string[]>;
  /** The fetch to send with; tests may pass their own. */
  fetch?: typeof fetch;
}

/** Both address families of `host`; an empty list when the name does not resolve. */
export async function resolveWithDns(host: string): Promise<string[]> {
  const lookups = await Promise.allSettled([
    Deno.resolveDns(host, "A"),
    Deno.resolveDns(host, "AAAA"),
  ]);
  return lookups.flatMap((r) => r.status === "fulfilled" ? r.value : []);
}

/** The addresses a host may be reached at, or why it may not be. */
export type AddressCheck =
  | { ok: true; addresses: string[] }
  | { ok: false; failure: "refused" | "unresolved"; reason: string };

/**
 * Resolve `host` (an IP literal, `localhost` or a DNS name) and check that every address it
 * resolves to is public unless `allowPrivate`. Shared by the push/identity guard and the
 * federation client, which connects to exactly the addresses returned here.
 */
export async function checkHostAddresses(
  host: string,
  options: { allowPrivate: boolean; resolve?: (host: string) => Promise<string[]> },
): Promise<AddressCheck> {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  let addresses: string[];
  if (classifyAddress(bare) !== null) {
    addresses = [bare];
  } else if (/(^|\.)localhost\.?$/i.test(bare)) {
    // Loopback by definition (RFC 6761), whatever DNS says; fetch reads the hosts file.
    addresses = ["127.0.0.1", "::1"];
  } else {
    addresses = await (options.resolve ?? resolveWithDns)(bare);
    if (addresses.length === 0) {
      return { ok: false, failure: "unresolved", reason: `${bare} does not resolve` };
    }
  }
  if (!options.allowPrivate) {
    // A client may connect to any of the addresses, so each one must be allowed.
    for (const address of addresses) {
      const kind = classifyAddress(address) ?? "reserved";
      if (kind !== "public") {
        return { ok: false, failure: "refused", reason: `${bare} resolves to a ${kind} address` };
      }
    }
  }
  return { ok: true, addresses };
}

/** An OutboundHttp that checks every destination address before it connects. */
export class GuardedFetch implements OutboundHttp {
  readonly #allowPrivate: boolean;
  readonly #timeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #resolve: (host: string) => Promise<string[]>;
  readonly #fetch: typeof fetch;

  /** Build a guard; see GuardedFetchOptions for the defaults. */
  constructor(options: GuardedFetchOptions) {
    this.#allowPrivate = options.allowPrivate;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024;
    this.#resolve = options.resolve ?? resolveWithDns;
    this.#fetch = options.fetch ?? fetch;
  }

  /** Refuse `url` unless every address its host resolves to is allowed. */
  async checkDestination(url: URL): Promise<void> {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new OutboundError("refused", `scheme ${url.protocol} is not allowed`);
    }
    if (this.#allowPrivate) return;
    const check = await checkHostAddresses(url.hostname, {
      allowPrivate: false,
      resolve: this.#resolve,
    });
    if (!check.ok) throw new OutboundError(check.failure, check.reason);
  }

  /** Send the request once; never follows redirects (a 3xx comes back as the response). */
  async request(url: string, request: OutboundRequest): Promise<OutboundResponse> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new OutboundError("refused", "not a URL");
    }
    await this.checkDestination(parsed);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#timeoutMs);
    try {
      const response = await this.#fetch(parsed, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        redirect: "manual",
        signal: controller.signal,
      });
      const text = await this.#readBody(response);
      return { status: response.status, headers: response.headers, text };
    } catch (e) {
      if (e instanceof OutboundError) throw e;
      if (timedOut) throw new OutboundError("timeout", `no answer within ${this.#timeoutMs} ms`);
      throw new OutboundError("network", e instanceof Error ? e.message : String(e));
    } finally {
      clearTimeout(timer);
    }
  }

  async #readBody(response: Response): Promise<string> {
    const limit = this.#maxResponseBytes;
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > limit || response.body === null) {
      await response.body?.cancel();
      if (declared > limit) throw new OutboundError("too_large", `body of ${declared} bytes`);
      return "";
    }
    const all = await readStreamUpTo(response.body, limit);
    if (all === null) throw new OutboundError("too_large", `body over ${limit} bytes`);
    return new TextDecoder().decode(all);
  }
}
