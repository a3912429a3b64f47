/**
 * Rate limits: one token bucket per (action, key) with an injectable clock. A bucket holds up to
 * `burst` tokens and refills at `perSecond`; each request takes one. Each process keeps its own
 * buckets in memory (buckets that have refilled completely carry no information and are dropped
 * when the map grows), and with SharedRateCounters every hit also counts against the fleet's
 * counters in KV, so N processes on one database do not allow N times the limit
 * (domain/shared_rate_counters.ts, domain/fleet_rate_windows.ts).
 */
import type { SharedRateCounters } from "./shared_rate_counters.ts";

/** The rate-limited actions. */
export type RateLimitedAction =
  | "login"
  | "register"
  | "registration_token_validity"
  | "oauth_client_registration"
  | "oauth_token"
  | "create_room"
  | "send"
  | "join"
  | "key_claim"
  | "to_device"
  | "state"
  | "invite"
  | "invited"
  | "membership"
  | "profile"
  | "filter"
  | "account_data"
  | "receipt"
  | "typing"
  | "push_rules"
  | "directory"
  | "presence"
  | "report"
  | "search"
  | "threepid_validation"
  | "key_query"
  | "federation_invite"
  | "federation_key_claim"
  | "user_write"
  | "device_code_entry"
  | "media_upload"
  | "media_create"
  | "url_preview";

/** A token bucket's shape. */
export interface RateLimitRule {
  burst: number;
  perSecond: number;
}

/**
 * Defaults: generous for real clients (Element sends bursts on start-up) and for test suites
 * that create many rooms and messages per user quickly; tight where guessing pays (login).
 */
export const DEFAULT_RATE_LIMITS: Readonly<Record<RateLimitedAction, RateLimitRule>> = Object
  .freeze({
    login: { burst: 10, perSecond: 1 },
    register: { burst: 10, perSecond: 0.2 },
    // Each check is a guess at the registration token (Synapse's rc_registration_token_validity).
    registration_token_validity: { burst: 5, perSecond: 0.1 },
    // OAuth dynamic client registration (per address): anyone may register, and each client is
    // kept for good, so a flood is storage; a real client registers once per sign-in.
    oauth_client_registration: { burst: 20, perSecond: 0.1 },
    // The token, revocation and device authorization endpoints (per address): codes and tokens
    // are 32 random bytes, so this is against floods, not guessing; a device grant polls every
    // 5 s and a session refreshes every 5 minutes.
    oauth_token: { burst: 50, perSecond: 2 },
    create_room: { burst: 50, perSecond: 2 },
    send: { burst: 100, perSecond: 20 },
    join: { burst: 50, perSecond: 5 },
    // Claims use up other users' one-time keys (the spec lets anyone claim), so draining them
    // is bounded; a client claims for a whole room in one request, so real use stays far below.
    key_claim: { burst: 50, perSecond: 5 },
    // One room key goes to every device of a room in a request or two; key requests and
    // verification chatter are small bursts (Synapse's rc_key_requests: 20/s, burst 100).
    to_device: { burst: 100, perSecond: 20 },
    // Writes below: Synapse puts every event under rc_message (0.2/s, burst 10) and invites
    // under rc_invites; ours stay looser so SyTest and busy clients never meet them, and the
    // byte and count caps bound what a patient user can store. State events are rarer than
    // messages and every joiner receives them (2,000 in 15 s made first syncs 60 MB).
    state: { burst: 50, perSecond: 5 },
    // Per inviter (Synapse's per_issuer: 0.3/s, burst 10) and per invitee, so no one can bury
    // a user's sync under invites (Synapse's per_user: 0.003/s, burst 5).
    invite: { burst: 50, perSecond: 2 },
    invited: { burst: 20, perSecond: 0.2 },
    membership: { burst: 50, perSecond: 5 },
    // A profile change rewrites the member event in every joined room.
    profile: { burst: 20, perSecond: 0.5 },
    filter: { burst: 20, perSecond: 1 },
    account_data: { burst: 100, perSecond: 10 },
    receipt: { burst: 100, perSecond: 10 },
    typing: { burst: 50, perSecond: 5 },
    push_rules: { burst: 50, perSecond: 5 },
    directory: { burst: 20, perSecond: 1 },
    presence: { burst: 30, perSecond: 1 },
    // Reports reach people (administrators), so a flood of them is an attack on their time.
    report: { burst: 10, perSecond: 0.05 },
    // A search can read about 100,000 index entries; clients search as a person types at most.
    search: { burst: 20, perSecond: 1 },
    // Each requestToken mails someone: per client and per address (Synapse's
    // rc_3pid_validation: 0.003/s, burst 5), so no one can flood an inbox through us.
    threepid_validation: { burst: 5, perSecond: 0.01 },
    // Notary queries (per address): anyone may ask, and a miss makes us fetch from the servers
    // named, so each address gets a server's steady need, not a lever on other servers.
    key_query: { burst: 100, perSecond: 10 },
    // Inbound invites per inviting server: each may write a record every sync of the invitee
    // lists (besides the per-user cap of open invites); a busy server's users invite in bursts.
    federation_invite: { burst: 50, perSecond: 1 },
    // One-time key claims per claiming server: each takes keys for good (up to 10,000 per
    // request), so one server must not drain every local device's keys; its users' own claims
    // are limited there, so this only needs room for a busy server's sum.
    federation_key_claim: { burst: 100, perSecond: 10 },
    // Devices, keys, key backups, dehydrated devices: bounded by their own caps, limited here
    // only so no write is free.
    user_write: { burst: 200, perSecond: 20 },
    // User codes typed on the device link page (RFC 8628 §5.1: they are short, so guesses must
    // be limited); per signed-in user, and a person types a code or two.
    device_code_entry: { burst: 10, perSecond: 0.1 },
    // Uploads are bounded by size and quota; this keeps one user from tying up the server's
    // commits with a flood of small ones. A client sends an album as a burst.
    media_upload: { burst: 50, perSecond: 2 },
    // Each reservation of `/media/v1/create` is a KV record kept for a day (Synapse's
    // rc_media_create: 10/s, burst 50; the pending cap bounds them too).
    media_create: { burst: 50, perSecond: 10 },
    // Each preview makes the server fetch a page and maybe an image (up to 10 MiB each) from
    // wherever the user points it; clients ask once per link shown, and the cache answers repeats.
    url_preview: { burst: 20, perSecond: 1 },
  });

/** The outcome of taking a token: allowed, or refused with the wait until the next token. */
export type RateLimitResult = { allowed: true } | { allowed: false; retryAfterMs: number };

/** Buckets kept before idle ones are swept. */
const MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * The rate limiter of a server: this process's token buckets and, when given, the fleet's
 * counters. A hit is allowed when both have room; one the local bucket refuses costs no read.
 */
export class RateLimiter {
  private readonly buckets: TokenBuckets;

  /** `rules` per action; `now` injectable so tests need no sleeping; `shared`: the fleet's. */
  constructor(
    private readonly rules: Readonly<Record<RateLimitedAction, RateLimitRule>> =
      DEFAULT_RATE_LIMITS,
    now: () => number = Date.now,
    private readonly shared?: SharedRateCounters,
  ) {
    this.buckets = new TokenBuckets(rules, now);
  }

  /** Take one hit of (action, key): from this process's bucket and the fleet's counters. */
  take(action: RateLimitedAction, key: string): Promise<RateLimitResult> {
    const local = this.buckets.check(action, key);
    if (!local.allowed) return Promise.resolve(local);
    if (this.shared === undefined) return Promise.resolve(this.buckets.take(action, key));
    return this.shared.take(action, key, this.rules[action], () => this.buckets.take(action, key));
  }

  /** Commit the hits this process has not flushed yet (shutdown, tests). */
  async flush(): Promise<void> {
    await this.shared?.flush();
  }

  /** Stop the flush timer; hits not flushed are dropped. */
  close(): void {
    this.shared?.close();
  }
}

/** Token buckets per (action, key), in this process's memory. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  /** `rules` per action; `now` injectable so tests need no sleeping. */
  constructor(
    private readonly rules: Readonly<Record<RateLimitedAction, RateLimitRule>> =
      DEFAULT_RATE_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the bucket of (action, key) has a token, without taking it. */
  check(action: RateLimitedAction, key: string): RateLimitResult {
    const rule = this.rules[action];
    const bucket = this.buckets.get(`${action}\u0000${key}`);
    if (bucket === undefined) return { allowed: true };
    const tokens = this.refilled(rule, bucket, this.now());
    if (tokens >= 1) return { allowed: true };
    return { allowed: false, retryAfterMs: Math.ceil(((1 - tokens) / rule.perSecond) * 1000) };
  }

  /** Take one token from the bucket of (action, key). */
  take(action: RateLimitedAction, key: string): RateLimitResult {
    const rule = this.rules[action];
    const now = this.now();
    const id = `${action}\u0000${key}`;
    const bucket = this.buckets.get(id) ?? { tokens: rule.burst, updatedAt: now };
    bucket.tokens = this.refilled(rule, bucket, now);
    bucket.updatedAt = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      this.store(id, bucket);
      return { allowed: true };
    }
    this.store(id, bucket);
    const retryAfterMs = Math.ceil(((1 - bucket.tokens) / rule.perSecond) * 1000);
    return { allowed: false, retryAfterMs };
  }

  private refilled(rule: RateLimitRule, bucket: Bucket, now: number): number {
    const elapsed = Math.max(0, now - bucket.updatedAt) / 1000;
    return Math.min(rule.burst, bucket.tokens + elapsed * rule.perSecond);
  }

  private store(id: string, bucket: Bucket): void {
    if (!this.buckets.has(id) && this.buckets.size >= MAX_BUCKETS) this.sweep();
    this.buckets.set(id, bucket);
  }

  /** Drop buckets that are full again (or would be): forgetting them changes no answer. */
  private sweep(): void {
    const now = this.now();
    for (const [id, bucket] of this.buckets) {
      const action = id.slice(0, id.indexOf("\u0000")) as RateLimitedAction;
      const rule = this.rules[action];
      if (bucket.tokens + ((now - bucket.updatedAt) / 1000) * rule.perSecond >= rule.burst) {
        this.buckets.delete(id);
      }
    }
    // Under a flood of distinct keys nothing may be full; then forget the oldest half.
    if (this.buckets.size >= MAX_BUCKETS) {
      let drop = this.buckets.size / 2;
      for (const id of this.buckets.keys()) {
        if (drop-- <= 0) break;
        this.buckets.delete(id);
      }
    }
  }
}
