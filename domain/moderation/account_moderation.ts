/**
 * Server administration of accounts: who is an administrator, and the spec's account locking
 * and suspension (`/v1/admin/lock`, `/v1/admin/suspend`). Statuses live in KV and are read on
 * every authenticated request, so a lock set by one process holds in every other at once.
 */
import { MatrixError } from "../errors.ts";
import { parseUserId } from "../protocol/identifiers.ts";
import type { AccountModerationRecord, ModerationStore } from "../ports/moderation_store.ts";
import type { Session, SessionResolver } from "../session.ts";

/** A user's moderation status as the admin endpoints and the session check see it. */
export interface ModerationStatus {
  readonly locked: boolean;
  readonly suspended: boolean;
}

const UNMODERATED: ModerationStatus = Object.freeze({ locked: false, suspended: false });

/** What account moderation needs. */
export interface AccountModerationOptions {
  store: ModerationStore;
  serverName: string;
  /** Server administrators (configured with `TESSERA_ADMINS`). */
  admins: readonly string[];
  /** Whether a local account exists and is not deactivated. */
  accountIsActive(userId: string): Promise<boolean>;
  now?: () => number;
}

/** Locks, suspensions and the administrator check. */
export class AccountModeration {
  private readonly store: ModerationStore;
  private readonly serverName: string;
  private readonly admins: ReadonlySet<string>;
  private readonly accountIsActive: (userId: string) => Promise<boolean>;
  private readonly now: () => number;

  /** Build over a store and the configured administrators. */
  constructor(options: AccountModerationOptions) {
    this.store = options.store;
    this.serverName = options.serverName;
    this.admins = new Set(options.admins);
    this.accountIsActive = options.accountIsActive;
    this.now = options.now ?? Date.now;
  }

  /** Whether `userId` is a server administrator. */
  isAdmin(userId: string): boolean {
    return this.admins.has(userId);
  }

  /** The user's current status (one KV read; never cached, so every process agrees). */
  async status(userId: string): Promise<ModerationStatus> {
    return (await this.store.getAccountModeration(userId)) ?? UNMODERATED;
  }

  /** `GET /admin/{lock,suspend}/{userId}`: the target's status, for administrators only. */
  async statusFor(actor: string, target: string): Promise<ModerationStatus> {
    await this.checkTarget(actor, target);
    return await this.status(target);
  }

  /** `PUT /admin/lock/{userId}`: lock or unlock the target; returns the new status. */
  setLocked(actor: string, target: string, locked: boolean): Promise<ModerationStatus> {
    return this.update(actor, target, (current) => ({ ...current, locked }));
  }

  /** `PUT /admin/suspend/{userId}`: suspend or unsuspend the target; returns the new status. */
  setSuspended(actor: string, target: string, suspended: boolean): Promise<ModerationStatus> {
    return this.update(actor, target, (current) => ({ ...current, suspended }));
  }

  private async update(
    actor: string,
    target: string,
    change: (current: ModerationStatus) => ModerationStatus,
  ): Promise<ModerationStatus> {
    await this.checkTarget(actor, target);
    // The spec forbids acting on oneself or on another administrator.
    if (target === actor || this.isAdmin(target)) {
      throw new MatrixError(
        "M_FORBIDDEN",
        403,
        "Administrators cannot lock or suspend themselves or other administrators",
      );
    }
    const next = change(await this.status(target));
    const record: AccountModerationRecord = {
      locked: next.locked,
      suspended: next.suspended,
      updatedBy: actor,
      updatedAt: this.now(),
    };
    await this.store.putAccountModeration(target, record);
    return { locked: record.locked, suspended: record.suspended };
  }

  /**
   * The spec's order: authorisation before any account lookup (so non-administrators cannot
   * probe which users exist), then a local user ID, then an active account.
   */
  private async checkTarget(actor: string, target: string): Promise<void> {
    if (!this.isAdmin(actor)) {
      throw new MatrixError("M_FORBIDDEN", 403, "Requesting user is not a server administrator");
    }
    const parsed = parseUserId(target);
    if (!parsed.ok || parsed.value.serverName !== this.serverName) {
      throw new MatrixError("M_INVALID_PARAM", 400, "The user ID is not a local user");
    }
    if (!(await this.accountIsActive(target))) {
      throw new MatrixError("M_NOT_FOUND", 404, "User not found");
    }
  }
}

/**
 * What a suspended user may still do, as the spec's account suspension describes it: read, leave
 * rooms and reject invites, redact, manage devices, keys and account data, log out and deactivate.
 * Refused: sending events, joining, inviting, knocking, kicking, banning, creating or upgrading
 * rooms, and changing the profile or the room directory. `path` is relative to the client API
 * root (`/rooms/!r:x/send/m.room.message/1`).
 */
export function suspendedMayRequest(method: string, path: string): boolean {
  if (method === "GET" || method === "HEAD" || method === "OPTIONS") return true;
  return !SUSPENDED_REFUSALS.some(([m, pattern]) => m === method && pattern.test(path));
}

const SUSPENDED_REFUSALS: ReadonlyArray<readonly [string, RegExp]> = [
  ["PUT", /^\/rooms\/[^/]+\/send\//],
  ["POST", /^\/rooms\/[^/]+\/send\//],
  ["PUT", /^\/rooms\/[^/]+\/state\//],
  ["POST", /^\/rooms\/[^/]+\/(?:invite|join|kick|ban|unban|upgrade)$/],
  ["POST", /^\/(?:join|knock)\/[^/]+$/],
  ["POST", /^\/createRoom$/],
  ["PUT", /^\/profile\/[^/]+\/[^/]+$/],
  ["DELETE", /^\/profile\/[^/]+\/[^/]+$/],
  ["PUT", /^\/directory\/room\/[^/]+$/],
  ["DELETE", /^\/directory\/room\/[^/]+$/],
  ["PUT", /^\/directory\/list\/room\/[^/]+$/],
];

/** The client API root of a request path (`/_matrix/client/v3`, `/r0`, `/v1`, `/unstable/x`). */
export function clientApiRelativePath(path: string): string {
  // Unstable paths may name an MSC (`/unstable/org.matrix.msc1234/...`); names hold a dot.
  return path.replace(/^\/_matrix\/client\/(?:v1|v3|r0|unstable(?:\/[^/.]+\.[^/]+)?)(?=\/)/, "");
}

/**
 * Resolves access tokens and adds the user's moderation status to the session, read from KV
 * on every request; `requireSession` refuses locked users and the writes of suspended ones.
 */
export class ModeratedSessionResolver implements SessionResolver {
  /** Wrap `inner` (the accounts' resolver) with `moderation`'s status. */
  constructor(
    private readonly inner: SessionResolver,
    private readonly moderation: AccountModeration,
  ) {}

  /** See SessionResolver.resolveAccessToken. */
  async resolveAccessToken(token: string): Promise<Session | null> {
    const session = await this.inner.resolveAccessToken(token);
    if (session === null) return null;
    const status = await this.moderation.status(session.userId);
    if (!status.locked && !status.suspended) return session;
    return { ...session, locked: status.locked, suspended: status.suspended };
  }

  /** See SessionResolver.noteActivity. */
  async noteActivity(
    session: Session,
    ip: string | undefined,
    userAgent: string | undefined,
  ): Promise<void> {
    await this.inner.noteActivity?.(session, ip, userAgent);
  }
}
