/**
 * Resolving server names (Server-Server API, "Resolving server names"): from a server name
 * to where to connect, which name the TLS certificate must carry, and the Host header. Pure:
 * the `.well-known/matrix/server` document and SRV records come from injected look-ups (the
 * adapter in outbound/ fetches, caches and connects).
 *
 * The spec's steps, in order:
 * 1. an IP literal: that address, the given port or 8448;
 * 2. a DNS name with an explicit port: that name and port;
 * 3. `https://<hostname>/.well-known/matrix/server` naming `m.server` = delegated[:port]:
 *    3.1 an IP literal, 3.2 with a port, 3.3 SRV `_matrix-fed._tcp.<delegated>`,
 *    3.4 (deprecated) SRV `_matrix._tcp.<delegated>`, 3.5 the delegated name on 8448;
 * 4. (no valid well-known) SRV `_matrix-fed._tcp.<hostname>`;
 * 5. (deprecated) SRV `_matrix._tcp.<hostname>`;
 * 6. the hostname on 8448.
 */
import { parseServerName, type ServerName } from "../protocol/identifiers.ts";
import type { JsonValue } from "../protocol/json.ts";

/** The default federation port. */
export const DEFAULT_FEDERATION_PORT = 8448;

/** One place to try, in the order returned. */
export interface ServerTarget {
  /** An IP literal (IPv6 without brackets) or a DNS name to resolve with A/AAAA. */
  readonly connectHost: string;
  readonly port: number;
  /** The name the certificate must be valid for (an IP literal or a DNS name); also the SNI. */
  readonly tlsName: string;
  /** The Host header the request carries. */
  readonly hostHeader: string;
}

/** An SRV record (RFC 2782); a target of "." means the service is not offered. */
export interface SrvRecord {
  readonly target: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/** How discovery reaches the network; the adapter implements these (and caches). */
export interface DiscoveryLookups {
  /**
   * The parsed JSON of `https://<hostname>/.well-known/matrix/server`, or undefined when there
   * is none usable (no answer, not 200, not JSON, too large).
   */
  wellKnown(hostname: string): Promise<JsonValue | undefined>;
  /** The SRV records of `name` (e.g. `_matrix-fed._tcp.example.org`); empty when none. */
  srv(name: string): Promise<SrvRecord[]>;
}

/** Why a server name cannot be resolved at all. */
export class InvalidServerName extends Error {
  /** Build from the name and the parser's reason. */
  constructor(readonly serverName: string, reason: string) {
    super(reason);
    this.name = "InvalidServerName";
  }
}

/** The server name as it appears in a Host header or URL (IPv6 in brackets). */
function hostText(name: ServerName): string {
  return name.kind === "ipv6" ? `[${name.host}]` : name.host;
}

function withPort(name: ServerName): string {
  return name.port === undefined ? hostText(name) : `${hostText(name)}:${name.port}`;
}

/** The valid server name in a well-known document's `m.server`, else undefined. */
export function delegatedServer(document: JsonValue | undefined): ServerName | undefined {
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    return undefined;
  }
  const server = document["m.server"];
  if (typeof server !== "string") return undefined;
  const parsed = parseServerName(server);
  return parsed.ok ? parsed.value : undefined;
}

/**
 * SRV records in the order to try: lowest priority first, then heavier weight first (a
 * deterministic reading of RFC 2782's weighted choice), without "." targets; trailing dots of
 * targets dropped.
 */
export function orderSrv(records: readonly SrvRecord[]): SrvRecord[] {
  return records
    .filter((r) => r.target !== "." && r.target !== "" && r.port > 0)
    .map((r) => ({ ...r, target: r.target.replace(/\.$/, "") }))
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight);
}

/**
 * Targets from SRV for `host` (`_matrix-fed._tcp` first, then the deprecated `_matrix._tcp`),
 * each presenting a certificate for `host` with Host `host`; undefined when neither has one.
 */
async function srvTargets(
  host: string,
  lookups: DiscoveryLookups,
): Promise<ServerTarget[] | undefined> {
  for (const service of ["_matrix-fed._tcp", "_matrix._tcp"]) {
    const records = orderSrv(await lookups.srv(`${service}.${host}`));
    if (records.length > 0) {
      return records.map((r) => ({
        connectHost: r.target,
        port: r.port,
        tlsName: host,
        hostHeader: host,
      }));
    }
  }
  return undefined;
}

/**
 * Steps 1-2 and 3.1-3.2 (and the fallback on 8448): a literal or an explicit port needs no
 * look-up. Undefined when SRV must be asked first.
 */
function direct(name: ServerName): ServerTarget | undefined {
  if (name.kind !== "dns" || name.port !== undefined) {
    return {
      connectHost: name.host,
      port: name.port ?? DEFAULT_FEDERATION_PORT,
      tlsName: name.host,
      hostHeader: withPort(name),
    };
  }
  return undefined;
}

/** Where to connect for `serverName`, most preferred first (never empty). */
export async function resolveServerName(
  serverName: string,
  lookups: DiscoveryLookups,
): Promise<ServerTarget[]> {
  const parsed = parseServerName(serverName);
  if (!parsed.ok) throw new InvalidServerName(serverName, parsed.reason);
  const name = parsed.value;
  const immediate = direct(name);
  if (immediate !== undefined) return [immediate];

  const delegated = delegatedServer(await lookups.wellKnown(name.host));
  if (delegated !== undefined) {
    const delegatedDirect = direct(delegated);
    if (delegatedDirect !== undefined) return [delegatedDirect];
    const viaSrv = await srvTargets(delegated.host, lookups);
    if (viaSrv !== undefined) return viaSrv;
    return [{
      connectHost: delegated.host,
      port: DEFAULT_FEDERATION_PORT,
      tlsName: delegated.host,
      hostHeader: delegated.host,
    }];
  }

  const viaSrv = await srvTargets(name.host, lookups);
  if (viaSrv !== undefined) return viaSrv;
  return [{
    connectHost: name.host,
    port: DEFAULT_FEDERATION_PORT,
    tlsName: name.host,
    hostHeader: name.host,
  }];
}

// Lifetimes of a cached well-known answer, as the spec recommends and Synapse applies.
/** Without caching headers: 24 hours. */
export const WELL_KNOWN_DEFAULT_MS = 24 * 60 * 60 * 1000;
/** Never longer than 48 hours, whatever the headers say. */
export const WELL_KNOWN_MAX_MS = 48 * 60 * 60 * 1000;
/** Never shorter than 5 minutes, so a `no-store` server is not asked on every request. */
export const WELL_KNOWN_MIN_MS = 5 * 60 * 1000;
/** A failed or invalid answer: 1 hour. */
export const WELL_KNOWN_ERROR_MS = 60 * 60 * 1000;

/** A temporary failure soon after a valid answer: retry after 2 minutes (Synapse's figure). */
export const WELL_KNOWN_DOWN_MS = 2 * 60 * 1000;
/** How long after a valid answer expires a temporary failure still counts as "soon after". */
export const WELL_KNOWN_REMEMBER_MS = 2 * 60 * 60 * 1000;

/**
 * What to cache when fetching a well-known document failed. A temporary failure (no answer,
 * 5xx) of a server whose last valid document expired less than 2 hours ago keeps that document,
 * retrying every 2 minutes, so a restart of its web server does not send us to the wrong port
 * for an hour; anything else caches "none" for an hour.
 */
export function wellKnownAfterFailure(
  previous: { document: JsonValue | null; validUntil?: number } | undefined,
  temporary: boolean,
  now: number,
): { document: JsonValue | null; lifetimeMs: number } {
  if (
    temporary && previous !== undefined && previous.document !== null &&
    previous.validUntil !== undefined && now - previous.validUntil < WELL_KNOWN_REMEMBER_MS
  ) {
    return { document: previous.document, lifetimeMs: WELL_KNOWN_DOWN_MS };
  }
  return { document: null, lifetimeMs: WELL_KNOWN_ERROR_MS };
}

/**
 * How long to keep a valid well-known answer: `Cache-Control` (`no-store`, `max-age`) first,
 * then `Expires`, else the 24-hour default; bounded to [5 minutes, 48 hours].
 */
export function wellKnownLifetimeMs(
  headers: { cacheControl?: string | null; expires?: string | null },
  now: number,
): number {
  const bound = (ms: number) => Math.min(WELL_KNOWN_MAX_MS, Math.max(WELL_KNOWN_MIN_MS, ms));
  const directives = new Map<string, string | undefined>();
  for (const part of (headers.cacheControl ?? "").split(",")) {
    const [key, value] = part.split("=", 2).map((s) => s.trim());
    if (key !== "") directives.set(key.toLowerCase(), value?.replace(/^"|"$/g, ""));
  }
  if (directives.has("no-store")) return bound(0);
  const maxAge = directives.get("max-age");
  if (maxAge !== undefined && /^\d+$/.test(maxAge)) return bound(Number(maxAge) * 1000);
  if (headers.expires !== undefined && headers.expires !== null) {
    const at = Date.parse(headers.expires);
    // An unparsable date (such as "0") means already expired (RFC 9111 section 5.3).
    return bound(Number.isNaN(at) ? 0 : at - now);
  }
  return WELL_KNOWN_DEFAULT_MS;
}
