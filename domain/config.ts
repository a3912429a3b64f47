/**
 * Server configuration from `TESSERA_*` environment variables, validated by one zod schema.
 * `loadConfig` is pure (the environment is passed in) so every rule is testable; a bad value
 * stops start-up with a one-line `ConfigError` naming the variable.
 *
 * To add a variable: add a field to `Config`, an entry to `variables` and a line in `toConfig`.
 */
import { z } from "zod";
import { parseBindHost, parseServerName, parseUserId } from "./protocol/identifiers.ts";
import { roomVersion } from "./protocol/room_versions.ts";
import {
  type OldSigningKey,
  parseOldSigningKeys,
  parseTrustedKeyServers,
  type TrustedKeyServer,
} from "./federation/key_config.ts";
import type { WakeMode } from "./ports/wake_source.ts";
import { defaultWakeMode, placementProblems } from "./config_placement.ts";

/** Who may register: anyone, holders of the registration token, or nobody. */
export type RegistrationMode = "open" | "token" | "closed";

/** The validated, frozen configuration the server runs with. */
export interface Config {
  /** Started with `--dev`: relaxed defaults for local development. */
  readonly dev: boolean;
  readonly serverName: string;
  readonly port: number;
  /** Bind address for Deno.serve (IPv6 without brackets). */
  readonly hostname: string;
  /** KV file or ":memory:"; undefined on Deno Deploy when unset, meaning `Deno.openKv()`. */
  readonly kvPath: string | undefined;
  /** Public base URL without a trailing slash; undefined means the caller derives one. */
  readonly publicBaseUrl: string | undefined;
  readonly registration: RegistrationMode;
  /** Set exactly when `registration` is "token". */
  readonly registrationToken: string | undefined;
  /** PEM file paths for serving HTTPS directly; undefined means plain HTTP. */
  readonly tls: { readonly certPath: string; readonly keyPath: string } | undefined;
  /**
   * The longest `/sync` and `/events` long-poll held open (`TESSERA_LONG_POLL_MAX_MS`); a
   * client's larger `timeout` is cut to it. For proxies or platforms that cut idle requests.
   */
  readonly longPollMaxMs: number;
  /** The 32-byte Ed25519 seed; undefined means generate one and keep it in KV. */
  readonly signingKeySeed: Uint8Array | undefined;
  /**
   * Retired signing keys (`TESSERA_OLD_SIGNING_KEYS`), published in `old_verify_keys` and still
   * accepted for what was signed before their `expired_ts`; absent when none is configured.
   */
  readonly oldSigningKeys?: readonly OldSigningKey[];
  /**
   * Notaries asked for a server's keys when it cannot be reached directly
   * (`TESSERA_TRUSTED_KEY_SERVERS`); absent means none, so no third party is trusted.
   */
  readonly trustedKeyServers?: readonly TrustedKeyServer[];
  readonly rateLimits: boolean;
  /**
   * How long a process holds the rate-limit hits it allowed before writing them for the fleet in
   * one commit, and how long it uses a read of the others' (`TESSERA_RATE_LIMIT_FLUSH_MS`,
   * domain/shared_rate_counters.ts): the overshoot across processes grows with it.
   */
  readonly rateLimitFlushMs: number;
  /** Outbound requests (push gateways, identity servers) may reach private addresses. */
  readonly outboundAllowPrivate: boolean;
  /**
   * Outbound TLS to identity servers is not verified (`TESSERA_OUTBOUND_TLS_VERIFY=off`): only
   * for test harnesses whose identity server has a self-signed certificate (SyTest's).
   */
  readonly outboundTlsVerify: boolean;
  /** SMTP for validation emails; undefined when email is not configured. */
  readonly smtp?: { readonly url: string; readonly from: string } | undefined;
  /** Server administrators (`TESSERA_ADMINS`): whois, account locks and suspensions. */
  readonly admins: readonly string[];
  /** `/.well-known/matrix/support`; undefined when nothing is configured (the document is 404). */
  readonly support?: {
    readonly contacts: readonly SupportContact[];
    readonly page?: string;
  };
  /** Guest accounts (`POST /register?kind=guest`) may be created and used. */
  readonly guestAccess: boolean;
  /** Federation with other homeservers (`TESSERA_FEDERATION*`). */
  readonly federation: {
    /** `TESSERA_FEDERATION=off`: no request goes out, the federation API answers 403/404. */
    readonly enabled: boolean;
    /** `TESSERA_FEDERATION_CA_FILE`: a PEM bundle of CAs trusted beside the system roots. */
    readonly caFile?: string;
    /** `TESSERA_FEDERATION_ALLOW_PRIVATE=true`: destinations may be loopback or private. */
    readonly allowPrivate: boolean;
  };
  /**
   * The room version of new rooms whose creator names none (`TESSERA_DEFAULT_ROOM_VERSION`,
   * Synapse's `default_room_version`); absent means the newest stable one.
   */
  readonly defaultRoomVersion?: string;
  /**
   * How a long-poll learns of changes other processes commit (`TESSERA_WAKE`, kv/wake_sources.ts):
   * `watch` (kv.watch: Deno Deploy, KV Connect), `poll` (a KV file several processes share, where
   * kv.watch does not cross processes; every `pollMs`, `TESSERA_WAKE_POLL_MS`) or `local` (one
   * process: the in-process notifiers only).
   */
  readonly wake: { readonly mode: WakeMode; readonly pollMs: number };
  /**
   * Leased background jobs (domain/jobs/): how long a lease holds unrenewed, so how long a dead
   * process's job waits for another (`TESSERA_JOB_LEASE_MS`), and the probe job, which only
   * holds its lease `runMs` each `periodMs` and logs the run (`TESSERA_JOB_PROBE_MS`,
   * `TESSERA_JOB_PROBE_PERIOD_MS`): a check of a fleet's leases for tests; absent when unset.
   */
  readonly jobs: {
    readonly leaseMs: number;
    readonly probe?: { readonly runMs: number; readonly periodMs: number };
  };
  /**
   * Tessera as an OAuth 2.0 authorization server (the Matrix OAuth 2.0 API, domain/oauth/):
   * `enabled` (`TESSERA_OAUTH`, default on) serves auth_metadata, registration, the grants and
   * the sign-in pages; `passwordLogin` (`TESSERA_PASSWORD_LOGIN`, default on) keeps
   * `m.login.password` on `/login` for older clients (and the password form on the sign-in page).
   */
  readonly oauth: { readonly enabled: boolean; readonly passwordLogin: boolean };
  /**
   * An upstream OpenID Connect provider users may sign in with (`TESSERA_OIDC_*`); absent when
   * `TESSERA_OIDC_ISSUER` is unset.
   */
  readonly upstreamOidc?: UpstreamOidcConfig;
  /** The media repository (`TESSERA_MEDIA_*`, `TESSERA_URL_PREVIEW*`, domain/media/). */
  readonly media: MediaConfig;
  /** TURN servers for `GET /voip/turnServer`; undefined when none is configured. */
  readonly turn?:
    | {
      readonly uris: readonly string[];
      readonly sharedSecret: string;
      readonly ttlSeconds: number;
    }
    | undefined;
}

/**
 * What the unauthenticated `/_matrix/media/v3|r0` reads serve (`TESSERA_MEDIA_LEGACY`): `frozen`
 * (the spec's freeze: only media created before the freeze time kept in KV at first start),
 * `on` (everything, for clients that only speak the legacy paths) or `off` (nothing: 404).
 */
export type MediaLegacyMode = "frozen" | "on" | "off";

/** The media repository's limits and switches. */
export interface MediaConfig {
  /** `TESSERA_MEDIA_MAX_UPLOAD_BYTES`: the largest upload; above it M_TOO_LARGE (413). */
  readonly maxUploadBytes: number;
  /** `TESSERA_MEDIA_QUOTA_BYTES`: the bytes one user's uploads may take in all. */
  readonly quotaBytes: number;
  /** `TESSERA_MEDIA_LEGACY`. */
  readonly legacy: MediaLegacyMode;
  /** `TESSERA_URL_PREVIEWS` (default on): `preview_url` fetches pages. */
  readonly urlPreviews: boolean;
  /** `TESSERA_URL_PREVIEW_ALLOW_PRIVATE=true`: previews may fetch private addresses (tests). */
  readonly urlPreviewAllowPrivate: boolean;
  /** `TESSERA_MEDIA_MAX_PIXELS`: images with more pixels are not decoded for thumbnails. */
  readonly maxPixels: number;
}

/** One upstream OpenID Connect provider (`TESSERA_OIDC_*`). */
export interface UpstreamOidcConfig {
  /** `TESSERA_OIDC_ID`: the provider's ID in paths and `m.login.sso` (default `oidc`). */
  readonly id: string;
  /** `TESSERA_OIDC_NAME`: what the sign-in button says (default "OpenID Connect"). */
  readonly name: string;
  /** `TESSERA_OIDC_ISSUER`: the issuer URL, discovered through its openid-configuration. */
  readonly issuer: string;
  /** `TESSERA_OIDC_CLIENT_ID`. */
  readonly clientId: string;
  /** `TESSERA_OIDC_CLIENT_SECRET`; absent for a public client (PKCE only). */
  readonly clientSecret?: string;
  /** `TESSERA_OIDC_SCOPES` (space-separated; default `openid profile email`). */
  readonly scopes: string;
  /** `TESSERA_OIDC_LOCALPART_CLAIM`: the claim a new user's localpart comes from. */
  readonly localpartClaim: string;
  /** `TESSERA_OIDC_DISPLAYNAME_CLAIM`: the claim a new user's display name comes from. */
  readonly displayNameClaim: string;
  /**
   * `TESSERA_OIDC_ALLOW_PRIVATE=true`: the provider may be on a loopback or private address
   * (tests, or a provider inside the operator's network).
   */
  readonly allowPrivate: boolean;
}

/** How the process was started; decided by main.ts, which may look at Deno itself. */
export interface ConfigOptions {
  dev: boolean;
  /** Running on Deno Deploy: an unset TESSERA_KV_PATH means the platform's default KV. */
  deploy?: boolean;
}

/** Defaults applied when a variable is unset (registration's depends on dev mode). */
export const CONFIG_DEFAULTS = Object.freeze({
  serverName: "localhost:8008",
  port: 8008,
  hostname: "127.0.0.1",
  kvPath: "./data/tessera.kv",
  /** On Deno Deploy: Deno.serve's own defaults, which Deploy's examples listen on. */
  deployHostname: "0.0.0.0",
  deployPort: 8000,
  longPollMaxMs: 120_000,
  rateLimits: true,
  rateLimitFlushMs: 100,
  outboundAllowPrivate: false,
  outboundTlsVerify: true,
  guestAccess: false,
  federation: true,
  federationAllowPrivate: false,
  turnTtlSeconds: 86_400,
  wakePollMs: 100,
  jobLeaseMs: 60_000,
  jobProbePeriodMs: 10_000,
  oauth: true,
  passwordLogin: true,
  oidcId: "oidc",
  oidcName: "OpenID Connect",
  oidcScopes: "openid profile email",
  oidcLocalpartClaim: "preferred_username",
  oidcDisplayNameClaim: "name",
  mediaMaxUploadBytes: 52_428_800,
  mediaQuotaBytes: 1_073_741_824,
  mediaLegacy: "frozen" as MediaLegacyMode,
  urlPreviews: true,
  urlPreviewAllowPrivate: false,
  mediaMaxPixels: 32_000_000,
});

/** A configuration problem; `message` is one line: `VARIABLE: problem`. */
export class ConfigError extends Error {
  /** Build from the offending variable and what is wrong with it. */
  constructor(
    readonly variable: string,
    readonly problem: string,
    /** Every problem found, one line each, the first being this error's own. */
    readonly problems: readonly string[] = [`${variable}: ${problem}`],
  ) {
    super(`${variable}: ${problem}`);
    this.name = "ConfigError";
  }
}

type Parsed<T> = { value: T } | { problem: string };

/** Quote an operator's value in a message, kept short and on one line. */
function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

/**
 * One optional variable. Empty counts as unset, because container tooling often passes
 * `NAME=` for "not configured".
 */
function variable<T>(parse: (raw: string) => Parsed<T>) {
  return z.string().optional().transform((raw, ctx): T | undefined => {
    if (raw === undefined || raw === "") return undefined;
    const parsed = parse(raw);
    if ("problem" in parsed) {
      ctx.issues.push({ code: "custom", message: parsed.problem, input: raw });
      return z.NEVER;
    }
    return parsed.value;
  });
}

function parsePort(raw: string): Parsed<number> {
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  return port >= 1 && port <= 65535
    ? { value: port }
    : { problem: `expected an integer from 1 to 65535, got ${quote(raw)}` };
}

function parseSwitch(raw: string): Parsed<boolean> {
  if (raw === "on") return { value: true };
  if (raw === "off") return { value: false };
  return { problem: `expected "on" or "off", got ${quote(raw)}` };
}

function parseBoolean(raw: string): Parsed<boolean> {
  // on/off too, as the other switches take them.
  if (raw === "true" || raw === "on") return { value: true };
  if (raw === "false" || raw === "off") return { value: false };
  return { problem: `expected "true" or "false", got ${quote(raw)}` };
}

function parseRoomVersion(raw: string): Parsed<string> {
  return roomVersion(raw) !== undefined
    ? { value: raw }
    : { problem: `expected a supported room version (1 to 12), got ${quote(raw)}` };
}

function parseRegistration(raw: string): Parsed<RegistrationMode> {
  return raw === "open" || raw === "token" || raw === "closed"
    ? { value: raw }
    : { problem: `expected "open", "token" or "closed", got ${quote(raw)}` };
}

// Secrets are never echoed back in messages: start-up errors end up in logs.
function parseRegistrationToken(raw: string): Parsed<string> {
  // The spec limits registration tokens to 64 characters of [A-Za-z0-9._~-].
  return /^[A-Za-z0-9._~-]{1,64}$/.test(raw)
    ? { value: raw }
    : { problem: "expected 1 to 64 characters from A-Z a-z 0-9 . _ ~ - (value not shown)" };
}

function parseSigningKeySeed(raw: string): Parsed<Uint8Array> {
  const expected = "expected the 32-byte Ed25519 seed in base64 (43 characters unpadded)";
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(raw)) {
    return { problem: `${expected}, got characters outside base64 (value not shown)` };
  }
  const unpadded = raw.replace(/=+$/, "").replaceAll("-", "+").replaceAll("_", "/");
  if (unpadded.length % 4 === 1) return { problem: `${expected}, got invalid base64 length` };
  const bytes = Math.floor((unpadded.length * 6) / 8);
  if (bytes !== 32) return { problem: `${expected}, got ${bytes} bytes` };
  // atob ignores non-zero trailing bits, as the spec's own example seed needs.
  const binary = atob(unpadded + "=");
  return { value: Uint8Array.from(binary, (c) => c.charCodeAt(0)) };
}

/** A contact of `/.well-known/matrix/support`: an administrator's Matrix ID or email address. */
export interface SupportContact {
  readonly role: "m.role.admin";
  readonly matrix_id?: string;
  readonly email_address?: string;
}

function parseAdmins(raw: string): Parsed<string[]> {
  const ids = raw.split(",").map((id) => id.trim()).filter((id) => id !== "");
  const bad = ids.find((id) => !parseUserId(id).ok);
  if (bad !== undefined || ids.length === 0) {
    return { problem: `expected comma-separated user IDs, got ${quote(bad ?? raw)}` };
  }
  return { value: ids };
}

// Each entry is a Matrix user ID (`@admin:example.org`) or an email address.
function parseSupportContacts(raw: string): Parsed<SupportContact[]> {
  const entries = raw.split(",").map((e) => e.trim()).filter((e) => e !== "");
  const contacts: SupportContact[] = [];
  for (const entry of entries) {
    if (entry.startsWith("@") && parseUserId(entry).ok) {
      contacts.push({ role: "m.role.admin", matrix_id: entry });
    } else if (/^[^@\s]+@[^@\s]+$/.test(entry)) {
      contacts.push({ role: "m.role.admin", email_address: entry });
    } else {
      return { problem: `expected user IDs or email addresses, got ${quote(entry)}` };
    }
  }
  if (contacts.length === 0) return { problem: "expected at least one contact" };
  return { value: contacts };
}

// Credentials in the URL are never echoed back: start-up errors end up in logs.
function parseSmtpUrl(raw: string): Parsed<string> {
  const expected = "expected smtp://[user:pass@]host[:port] or smtps://...";
  if (!URL.canParse(raw)) return { problem: `${expected} (value not shown)` };
  const url = new URL(raw);
  if (url.protocol !== "smtp:" && url.protocol !== "smtps:") {
    return { problem: `${expected}, got scheme ${quote(url.protocol)}` };
  }
  if (url.hostname === "" || (url.pathname !== "" && url.pathname !== "/") || url.search !== "") {
    return { problem: `${expected} (value not shown)` };
  }
  return { value: raw };
}

function parseMailFrom(raw: string): Parsed<string> {
  // `name@host` or `Display Name <name@host>`, one line.
  return /^([^<>\r\n]*<[^@\s<>]+@[^@\s<>]+>|[^@\s<>]+@[^@\s<>]+)$/.test(raw)
    ? { value: raw }
    : { problem: `expected an address (name@host or Name <name@host>), got ${quote(raw)}` };
}

function parseTurnUris(raw: string): Parsed<string[]> {
  const uris = raw.split(",").map((u) => u.trim()).filter((u) => u !== "");
  const bad = uris.find((u) => !/^turns?:[^\s]+$/.test(u));
  if (bad !== undefined || uris.length === 0) {
    return { problem: `expected comma-separated turn: or turns: URIs, got ${quote(bad ?? raw)}` };
  }
  return { value: uris };
}

function parseTtlSeconds(raw: string): Parsed<number> {
  const ttl = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  return ttl >= 60
    ? { value: ttl }
    : { problem: `expected whole seconds, at least 60, got ${quote(raw)}` };
}

/** A whole number of bytes (or pixels) from `min` to `max`. */
function parseCount(min: number, max: number): (raw: string) => Parsed<number> {
  return (raw) => {
    const n = /^\d{1,16}$/.test(raw) ? Number(raw) : NaN;
    return n >= min && n <= max
      ? { value: n }
      : { problem: `expected a whole number from ${min} to ${max}, got ${quote(raw)}` };
  };
}

function parseMediaLegacy(raw: string): Parsed<MediaLegacyMode> {
  return raw === "frozen" || raw === "on" || raw === "off"
    ? { value: raw }
    : { problem: `expected "frozen", "on" or "off", got ${quote(raw)}` };
}

function parseWakeMode(raw: string): Parsed<WakeMode> {
  return raw === "watch" || raw === "poll" || raw === "local"
    ? { value: raw }
    : { problem: `expected "watch", "poll" or "local", got ${quote(raw)}` };
}

/** Whole milliseconds from `min` to `max`. */
function parseMillis(min: number, max: number): (raw: string) => Parsed<number> {
  return (raw) => {
    const ms = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
    return ms >= min && ms <= max
      ? { value: ms }
      : { problem: `expected whole milliseconds from ${min} to ${max}, got ${quote(raw)}` };
  };
}

function parseBaseUrl(raw: string): Parsed<string> {
  const expected = "expected an http:// or https:// URL without query or fragment";
  if (!URL.canParse(raw)) return { problem: `${expected}, got ${quote(raw)}` };
  const url = new URL(raw);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { problem: `${expected}, got scheme ${quote(url.protocol)}` };
  }
  if (url.search !== "" || url.hash !== "" || raw.includes("?") || raw.includes("#")) {
    return { problem: `${expected}, got ${quote(raw)}` };
  }
  if (url.username !== "" || url.password !== "") {
    return { problem: `${expected} and without credentials` };
  }
  // No trailing slash so callers can append "/_matrix/..." directly.
  return { value: url.href.replace(/\/+$/, "") };
}

// The spec's identity provider IDs: 1 to 255 characters of [A-Za-z0-9._~-].
function parseIdpId(raw: string): Parsed<string> {
  return /^[A-Za-z0-9._~-]{1,255}$/.test(raw)
    ? { value: raw }
    : { problem: `expected 1 to 255 characters from A-Z a-z 0-9 . _ ~ -, got ${quote(raw)}` };
}

function parseOidcScopes(raw: string): Parsed<string> {
  const scopes = raw.split(/\s+/).filter((s) => s !== "");
  return scopes.includes("openid")
    ? { value: scopes.join(" ") }
    : { problem: `expected space-separated scopes including "openid", got ${quote(raw)}` };
}

const variables = {
  TESSERA_SERVER_NAME: variable((raw) => {
    const parsed = parseServerName(raw);
    return parsed.ok ? { value: raw } : { problem: parsed.reason };
  }),
  TESSERA_PORT: variable(parsePort),
  /** Platform convention (Heroku-style hosts set it); TESSERA_PORT wins when both are set. */
  PORT: variable(parsePort),
  TESSERA_HOSTNAME: variable((raw) => {
    const parsed = parseBindHost(raw);
    return parsed.ok
      ? { value: parsed.value.host }
      : { problem: `expected an IP address or host name, got ${quote(raw)}` };
  }),
  TESSERA_KV_PATH: variable((raw) =>
    raw.includes("\u0000") ? { problem: "path contains NUL" } : { value: raw }
  ),
  TESSERA_PUBLIC_BASEURL: variable(parseBaseUrl),
  TESSERA_REGISTRATION: variable(parseRegistration),
  TESSERA_REGISTRATION_TOKEN: variable(parseRegistrationToken),
  TESSERA_TLS_CERT: variable((raw) => ({ value: raw })),
  TESSERA_TLS_KEY: variable((raw) => ({ value: raw })),
  // Above 120 s the sync service cuts the wait anyway (MAX_SYNC_TIMEOUT_MS).
  TESSERA_LONG_POLL_MAX_MS: variable(parseMillis(1_000, CONFIG_DEFAULTS.longPollMaxMs)),
  TESSERA_SIGNING_KEY: variable(parseSigningKeySeed),
  TESSERA_OLD_SIGNING_KEYS: variable(parseOldSigningKeys),
  TESSERA_TRUSTED_KEY_SERVERS: variable(parseTrustedKeyServers),
  TESSERA_RATE_LIMITS: variable(parseSwitch),
  TESSERA_OUTBOUND_ALLOW_PRIVATE: variable(parseSwitch),
  TESSERA_OUTBOUND_TLS_VERIFY: variable(parseSwitch),
  TESSERA_SMTP_URL: variable(parseSmtpUrl),
  TESSERA_SMTP_FROM: variable(parseMailFrom),
  TESSERA_GUEST_ACCESS: variable(parseSwitch),
  TESSERA_FEDERATION: variable(parseSwitch),
  TESSERA_FEDERATION_CA_FILE: variable((raw) =>
    raw.includes("\u0000") ? { problem: "path contains NUL" } : { value: raw }
  ),
  TESSERA_FEDERATION_ALLOW_PRIVATE: variable(parseBoolean),
  TESSERA_DEFAULT_ROOM_VERSION: variable(parseRoomVersion),
  TESSERA_ADMINS: variable(parseAdmins),
  TESSERA_SUPPORT_CONTACTS: variable(parseSupportContacts),
  TESSERA_SUPPORT_PAGE: variable(parseBaseUrl),
  TESSERA_TURN_URIS: variable(parseTurnUris),
  TESSERA_TURN_SHARED_SECRET: variable((raw) => ({ value: raw })),
  TESSERA_TURN_TTL_SECONDS: variable(parseTtlSeconds),
  TESSERA_WAKE: variable(parseWakeMode),
  TESSERA_WAKE_POLL_MS: variable(parseMillis(10, 60_000)),
  TESSERA_JOB_LEASE_MS: variable(parseMillis(300, 3_600_000)),
  TESSERA_JOB_PROBE_MS: variable(parseMillis(1, 3_600_000)),
  TESSERA_JOB_PROBE_PERIOD_MS: variable(parseMillis(10, 86_400_000)),
  TESSERA_RATE_LIMIT_FLUSH_MS: variable(parseMillis(10, 5_000)),
  TESSERA_OAUTH: variable(parseSwitch),
  TESSERA_PASSWORD_LOGIN: variable(parseSwitch),
  TESSERA_OIDC_ISSUER: variable(parseBaseUrl),
  TESSERA_OIDC_ID: variable(parseIdpId),
  TESSERA_OIDC_NAME: variable((raw) => ({ value: raw })),
  TESSERA_OIDC_CLIENT_ID: variable((raw) => ({ value: raw })),
  TESSERA_OIDC_CLIENT_SECRET: variable((raw) => ({ value: raw })),
  TESSERA_OIDC_SCOPES: variable(parseOidcScopes),
  TESSERA_OIDC_LOCALPART_CLAIM: variable((raw) => ({ value: raw })),
  TESSERA_OIDC_DISPLAYNAME_CLAIM: variable((raw) => ({ value: raw })),
  TESSERA_OIDC_ALLOW_PRIVATE: variable(parseBoolean),
  // Up to 64 GiB: a bound that keeps byte counts exact in a JS number and in KV sums.
  TESSERA_MEDIA_MAX_UPLOAD_BYTES: variable(parseCount(1, 2 ** 36)),
  TESSERA_MEDIA_QUOTA_BYTES: variable(parseCount(0, 2 ** 50)),
  TESSERA_MEDIA_LEGACY: variable(parseMediaLegacy),
  TESSERA_URL_PREVIEWS: variable(parseSwitch),
  TESSERA_URL_PREVIEW_ALLOW_PRIVATE: variable(parseBoolean),
  TESSERA_MEDIA_MAX_PIXELS: variable(parseCount(1, 1_000_000_000)),
};

type Variables = z.output<z.ZodObject<typeof variables>>;

/** Drop PORT when TESSERA_PORT is set, so a stale PORT cannot fail a valid configuration. */
function dropShadowed(env: unknown): unknown {
  const e = env as Record<string, string | undefined>;
  if (e.TESSERA_PORT === undefined || e.TESSERA_PORT === "") return env;
  const { PORT: _shadowed, ...rest } = e;
  return rest;
}

/** The upstream provider's variables that mean nothing without TESSERA_OIDC_ISSUER. */
const OIDC_DETAIL_VARIABLES = [
  "TESSERA_OIDC_CLIENT_ID",
  "TESSERA_OIDC_CLIENT_SECRET",
  "TESSERA_OIDC_ID",
  "TESSERA_OIDC_NAME",
  "TESSERA_OIDC_SCOPES",
  "TESSERA_OIDC_LOCALPART_CLAIM",
  "TESSERA_OIDC_DISPLAYNAME_CLAIM",
  "TESSERA_OIDC_ALLOW_PRIVATE",
] as const;

function crossCheck(v: Variables, ctx: z.RefinementCtx): void {
  const issue = (variable: keyof Variables, message: string) =>
    ctx.addIssue({ code: "custom", path: [variable], message });
  if (v.TESSERA_SMTP_FROM !== undefined && v.TESSERA_SMTP_URL === undefined) {
    // A sender without a server would silently send nothing.
    issue("TESSERA_SMTP_URL", "required when TESSERA_SMTP_FROM is set");
  }
  if (v.TESSERA_REGISTRATION === "token" && v.TESSERA_REGISTRATION_TOKEN === undefined) {
    issue("TESSERA_REGISTRATION_TOKEN", 'required when TESSERA_REGISTRATION is "token"');
  }
  const mode = v.TESSERA_REGISTRATION;
  if (v.TESSERA_REGISTRATION_TOKEN !== undefined && mode !== undefined && mode !== "token") {
    // A token the server silently ignores would leave registration more open than intended.
    issue(
      "TESSERA_REGISTRATION_TOKEN",
      `set, but TESSERA_REGISTRATION is "${mode}"; use "token" or unset the token`,
    );
  }
  if ((v.TESSERA_TLS_CERT === undefined) !== (v.TESSERA_TLS_KEY === undefined)) {
    const [missing, present] = v.TESSERA_TLS_CERT === undefined
      ? ["TESSERA_TLS_CERT", "TESSERA_TLS_KEY"] as const
      : ["TESSERA_TLS_KEY", "TESSERA_TLS_CERT"] as const;
    issue(missing, `required when ${present} is set (give both or neither)`);
  }
  if (v.TESSERA_OIDC_ISSUER !== undefined && v.TESSERA_OIDC_CLIENT_ID === undefined) {
    issue("TESSERA_OIDC_CLIENT_ID", "required when TESSERA_OIDC_ISSUER is set");
  }
  if (v.TESSERA_OIDC_ISSUER === undefined) {
    // A provider half configured would silently offer no upstream sign-in at all.
    for (const name of OIDC_DETAIL_VARIABLES) {
      if (v[name] !== undefined) issue(name, "set, but TESSERA_OIDC_ISSUER is not");
    }
  }
  if ((v.TESSERA_TURN_URIS === undefined) !== (v.TESSERA_TURN_SHARED_SECRET === undefined)) {
    const [missing, present] = v.TESSERA_TURN_URIS === undefined
      ? ["TESSERA_TURN_URIS", "TESSERA_TURN_SHARED_SECRET"] as const
      : ["TESSERA_TURN_SHARED_SECRET", "TESSERA_TURN_URIS"] as const;
    issue(missing, `required when ${present} is set (give both or neither)`);
  }
}

function toConfig(v: Variables, options: ConfigOptions): Config {
  const registration = v.TESSERA_REGISTRATION ??
    (v.TESSERA_REGISTRATION_TOKEN !== undefined ? "token" : options.dev ? "open" : "closed");
  const tls = v.TESSERA_TLS_CERT !== undefined && v.TESSERA_TLS_KEY !== undefined
    ? Object.freeze({ certPath: v.TESSERA_TLS_CERT, keyPath: v.TESSERA_TLS_KEY })
    : undefined;
  const kvPath = v.TESSERA_KV_PATH ?? (options.deploy ? undefined : CONFIG_DEFAULTS.kvPath);
  return Object.freeze({
    dev: options.dev,
    serverName: v.TESSERA_SERVER_NAME ?? CONFIG_DEFAULTS.serverName,
    port: v.TESSERA_PORT ?? v.PORT ??
      (options.deploy ? CONFIG_DEFAULTS.deployPort : CONFIG_DEFAULTS.port),
    hostname: v.TESSERA_HOSTNAME ??
      (options.deploy ? CONFIG_DEFAULTS.deployHostname : CONFIG_DEFAULTS.hostname),
    kvPath,
    publicBaseUrl: v.TESSERA_PUBLIC_BASEURL,
    registration,
    registrationToken: registration === "token" ? v.TESSERA_REGISTRATION_TOKEN : undefined,
    tls,
    longPollMaxMs: v.TESSERA_LONG_POLL_MAX_MS ?? CONFIG_DEFAULTS.longPollMaxMs,
    signingKeySeed: v.TESSERA_SIGNING_KEY,
    // Absent rather than empty when unset, as for TURN below.
    ...(v.TESSERA_OLD_SIGNING_KEYS === undefined
      ? {}
      : { oldSigningKeys: Object.freeze(v.TESSERA_OLD_SIGNING_KEYS) }),
    ...(v.TESSERA_TRUSTED_KEY_SERVERS === undefined
      ? {}
      : { trustedKeyServers: Object.freeze(v.TESSERA_TRUSTED_KEY_SERVERS) }),
    rateLimits: v.TESSERA_RATE_LIMITS ?? CONFIG_DEFAULTS.rateLimits,
    rateLimitFlushMs: v.TESSERA_RATE_LIMIT_FLUSH_MS ?? CONFIG_DEFAULTS.rateLimitFlushMs,
    admins: Object.freeze(v.TESSERA_ADMINS ?? []),
    ...(v.TESSERA_SUPPORT_CONTACTS !== undefined || v.TESSERA_SUPPORT_PAGE !== undefined
      ? {
        support: Object.freeze({
          contacts: Object.freeze(v.TESSERA_SUPPORT_CONTACTS ?? []),
          ...(v.TESSERA_SUPPORT_PAGE !== undefined ? { page: v.TESSERA_SUPPORT_PAGE } : {}),
        }),
      }
      : {}),
    outboundAllowPrivate: v.TESSERA_OUTBOUND_ALLOW_PRIVATE ?? CONFIG_DEFAULTS.outboundAllowPrivate,
    outboundTlsVerify: v.TESSERA_OUTBOUND_TLS_VERIFY ?? CONFIG_DEFAULTS.outboundTlsVerify,
    // Absent rather than undefined when unset, as for TURN below.
    ...(v.TESSERA_SMTP_URL === undefined ? {} : {
      smtp: Object.freeze({
        url: v.TESSERA_SMTP_URL,
        // Without a sender, mail comes from noreply at the server's host name.
        from: v.TESSERA_SMTP_FROM ??
          `noreply@${(v.TESSERA_SERVER_NAME ?? CONFIG_DEFAULTS.serverName).replace(/:\d+$/, "")}`,
      }),
    }),
    guestAccess: v.TESSERA_GUEST_ACCESS ?? CONFIG_DEFAULTS.guestAccess,
    federation: Object.freeze({
      enabled: v.TESSERA_FEDERATION ?? CONFIG_DEFAULTS.federation,
      ...(v.TESSERA_FEDERATION_CA_FILE !== undefined
        ? { caFile: v.TESSERA_FEDERATION_CA_FILE }
        : {}),
      allowPrivate: v.TESSERA_FEDERATION_ALLOW_PRIVATE ?? CONFIG_DEFAULTS.federationAllowPrivate,
    }),
    // Absent rather than undefined when unset, as for TURN below.
    ...(v.TESSERA_DEFAULT_ROOM_VERSION === undefined
      ? {}
      : { defaultRoomVersion: v.TESSERA_DEFAULT_ROOM_VERSION }),
    wake: Object.freeze({
      mode: v.TESSERA_WAKE ?? defaultWakeMode(kvPath, options.deploy),
      pollMs: v.TESSERA_WAKE_POLL_MS ?? CONFIG_DEFAULTS.wakePollMs,
    }),
    jobs: Object.freeze({
      leaseMs: v.TESSERA_JOB_LEASE_MS ?? CONFIG_DEFAULTS.jobLeaseMs,
      ...(v.TESSERA_JOB_PROBE_MS === undefined ? {} : {
        probe: Object.freeze({
          runMs: v.TESSERA_JOB_PROBE_MS,
          periodMs: v.TESSERA_JOB_PROBE_PERIOD_MS ?? CONFIG_DEFAULTS.jobProbePeriodMs,
        }),
      }),
    }),
    oauth: Object.freeze({
      enabled: v.TESSERA_OAUTH ?? CONFIG_DEFAULTS.oauth,
      passwordLogin: v.TESSERA_PASSWORD_LOGIN ?? CONFIG_DEFAULTS.passwordLogin,
    }),
    ...(v.TESSERA_OIDC_ISSUER === undefined || v.TESSERA_OIDC_CLIENT_ID === undefined ? {} : {
      upstreamOidc: Object.freeze({
        id: v.TESSERA_OIDC_ID ?? CONFIG_DEFAULTS.oidcId,
        name: v.TESSERA_OIDC_NAME ?? CONFIG_DEFAULTS.oidcName,
        issuer: v.TESSERA_OIDC_ISSUER,
        clientId: v.TESSERA_OIDC_CLIENT_ID,
        ...(v.TESSERA_OIDC_CLIENT_SECRET === undefined
          ? {}
          : { clientSecret: v.TESSERA_OIDC_CLIENT_SECRET }),
        scopes: v.TESSERA_OIDC_SCOPES ?? CONFIG_DEFAULTS.oidcScopes,
        localpartClaim: v.TESSERA_OIDC_LOCALPART_CLAIM ?? CONFIG_DEFAULTS.oidcLocalpartClaim,
        displayNameClaim: v.TESSERA_OIDC_DISPLAYNAME_CLAIM ??
          CONFIG_DEFAULTS.oidcDisplayNameClaim,
        allowPrivate: v.TESSERA_OIDC_ALLOW_PRIVATE ?? false,
      }),
    }),
    media: Object.freeze({
      maxUploadBytes: v.TESSERA_MEDIA_MAX_UPLOAD_BYTES ?? CONFIG_DEFAULTS.mediaMaxUploadBytes,
      quotaBytes: v.TESSERA_MEDIA_QUOTA_BYTES ?? CONFIG_DEFAULTS.mediaQuotaBytes,
      legacy: v.TESSERA_MEDIA_LEGACY ?? CONFIG_DEFAULTS.mediaLegacy,
      urlPreviews: v.TESSERA_URL_PREVIEWS ?? CONFIG_DEFAULTS.urlPreviews,
      urlPreviewAllowPrivate: v.TESSERA_URL_PREVIEW_ALLOW_PRIVATE ??
        CONFIG_DEFAULTS.urlPreviewAllowPrivate,
      maxPixels: v.TESSERA_MEDIA_MAX_PIXELS ?? CONFIG_DEFAULTS.mediaMaxPixels,
    }),
    // Absent rather than undefined when unset, so configurations without TURN compare equal.
    ...(v.TESSERA_TURN_URIS !== undefined && v.TESSERA_TURN_SHARED_SECRET !== undefined
      ? {
        turn: Object.freeze({
          uris: Object.freeze(v.TESSERA_TURN_URIS),
          sharedSecret: v.TESSERA_TURN_SHARED_SECRET,
          ttlSeconds: v.TESSERA_TURN_TTL_SECONDS ?? CONFIG_DEFAULTS.turnTtlSeconds,
        }),
      }
      : {}),
  });
}

const envSchema = z.preprocess(dropShadowed, z.object(variables).superRefine(crossCheck));

/** Validate the environment and build the configuration; throws ConfigError on a bad value. */
export function loadConfig(
  env: Record<string, string | undefined>,
  options: ConfigOptions,
): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? "environment");
      return { name, message: i.message.replaceAll(/[\r\n]+/g, " ") };
    });
    const [first] = lines;
    throw new ConfigError(first.name, first.message, lines.map((l) => `${l.name}: ${l.message}`));
  }
  const placement = placementProblems(parsed.data, env, options.deploy ?? false);
  if (placement.length > 0) {
    const [first] = placement;
    throw new ConfigError(
      first.variable,
      first.problem,
      placement.map((p) => `${p.variable}: ${p.problem}`),
    );
  }
  return toConfig(parsed.data, options);
}

/** `TESSERA_*` variables present in `env` that no schema entry reads (likely typos). */
export function unknownTesseraVariables(env: Record<string, string | undefined>): string[] {
  return Object.keys(env).filter((name) => name.startsWith("TESSERA_") && !(name in variables))
    .sort();
}

/** `loadConfig` over the process environment (needs --allow-env). */
export function configFromDenoEnv(options: ConfigOptions): Config {
  return loadConfig(Deno.env.toObject(), options);
}
