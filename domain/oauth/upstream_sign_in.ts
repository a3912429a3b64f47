/**
 * Sign-in with an upstream OpenID Connect provider: the flow sent to the provider is kept in KV
 * (state -> nonce, PKCE verifier, where to go next; single use, 10 minutes) and bound to the
 * browser that started it by a cookie, so a callback carried to another browser (login CSRF,
 * RFC 6749 §10.12) is refused. The provider's (issuer, subject) is linked to a local user: the
 * first sign-in provisions an account (localpart from a claim, display name from another), later
 * ones sign in to the linked user. Nothing is cached in memory: every step reads KV.
 */
import { MatrixError } from "../errors.ts";
import { MAX_ID_BYTES } from "../protocol/identifiers.ts";
import { randomId, tokenHash } from "../accounts/tokens.ts";
import type { UpstreamOidc } from "../ports/upstream_oidc.ts";
import type { UpstreamFlowRecord, UpstreamSignInStore } from "../ports/upstream_sign_in_store.ts";

/** How long the provider has to send the browser back. */
export const UPSTREAM_FLOW_LIFETIME_MS = 10 * 60_000;
/** Suffixes tried after a taken localpart (`alice1`, `alice2`, ...) before a random one. */
const MAX_SUFFIX = 99;
/** How long a first sign-in may take to create and link the subject's account. */
const PROVISIONING_LEASE_MS = 30_000;
/** How often a sign-in waiting on another's claim looks for the link. */
const PROVISIONING_POLL_MS = 50;
/** Polls before giving up: past the lease, so a crashed holder's claim lapses first. */
const MAX_PROVISIONING_POLLS = Math.ceil(PROVISIONING_LEASE_MS / PROVISIONING_POLL_MS) + 20;
/** OpenID Connect allows `sub` up to 255 ASCII characters. */
const MAX_SUBJECT_LENGTH = 255;

/** Why an upstream sign-in was refused; the route renders it as an HTML error page. */
export type UpstreamSignInFailure =
  /** The state is unknown, spent or expired, or the browser is not the one that started it. */
  | "invalid_state"
  /** The provider failed, denied the request, or answered something that failed a check. */
  | "provider"
  /** The linked account is deactivated. */
  | "deactivated";

/** A refused upstream sign-in; `message` is shown to the user. */
export class UpstreamSignInError extends Error {
  /** Build from the failure kind, the message and the HTTP status of the error page. */
  constructor(
    readonly failure: UpstreamSignInFailure,
    message: string,
    readonly status: 400 | 403 | 500 | 502 | 503 = 400,
  ) {
    super(message);
    this.name = "UpstreamSignInError";
  }
}

/** The account operations sign-in needs (AccountService, the account store, profiles). */
export interface UpstreamAccounts {
  /** The server name user IDs are built with. */
  serverName: string;
  /** Whether an account exists and is usable. */
  status(userId: string): Promise<"active" | "deactivated" | "absent">;
  /**
   * Create an account without a password or device; a random localpart when none is given.
   * Throws MatrixError M_USER_IN_USE when the localpart is taken.
   */
  create(localpart: string | undefined): Promise<string>;
  /** The new user's first profile. */
  initialiseProfile(userId: string, displayName: string | undefined): Promise<void>;
  /** Retire an account created for a subject another request linked first. */
  discard(userId: string): Promise<void>;
}

/** The settings of one provider that sign-in uses. */
export interface UpstreamSignInOptions {
  /** The provider's ID in paths (`TESSERA_OIDC_ID`). */
  providerId: string;
  /** The claim a new user's localpart is made from. */
  localpartClaim: string;
  /** The claim a new user's display name comes from. */
  displayNameClaim: string;
  /** The absolute callback URL registered at the provider. */
  callbackUrl: string;
}

/** A started sign-in: where to send the browser, and the cookie value binding it. */
export interface StartedUpstreamSignIn {
  redirectTo: string;
  binding: string;
}

/** A finished sign-in. */
export interface CompletedUpstreamSignIn {
  userId: string;
  /** The local path the flow was started for. */
  next: string;
  /** True when this sign-in created the account. */
  provisioned: boolean;
}

/**
 * Map a claim's value to a localpart of the strict grammar (a-z 0-9 . _ = - / +): accents are
 * dropped, letters lowercased, every other character becomes `_`, and the result is cut so
 * that the user ID, with a suffix of up to two digits, stays within 255 bytes. Null when
 * nothing usable remains (the caller then picks a random localpart).
 */
export function localpartFromClaim(value: unknown, serverName: string): string | null {
  if (typeof value !== "string" && typeof value !== "number") return null;
  const text = String(value).normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  let mapped = text.replace(/[^a-z0-9._=\-/+]+/g, "_").replace(/^[_.]+|[_.]+$/g, "");
  const room = MAX_ID_BYTES - `@:${serverName}`.length - String(MAX_SUFFIX).length;
  if (mapped.length > room) mapped = mapped.slice(0, Math.max(0, room));
  return mapped.length === 0 ? null : mapped;
}

/** The display name a claim gives, trimmed to a sane length; undefined when absent. */
function displayNameFromClaim(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const trimmed = value.trim().slice(0, 256);
  return trimmed.length === 0 ? undefined : trimmed;
}

/** Upstream sign-in for one provider. */
export class UpstreamSignIn {
  private readonly now: () => number;

  /** Over the provider port, the store and the account operations. */
  constructor(
    private readonly deps: {
      provider: UpstreamOidc;
      store: UpstreamSignInStore;
      accounts: UpstreamAccounts;
      options: UpstreamSignInOptions;
      now?: () => number;
    },
  ) {
    this.now = deps.now ?? Date.now;
  }

  /** The provider's ID (`TESSERA_OIDC_ID`). */
  get providerId(): string {
    return this.deps.options.providerId;
  }

  /**
   * Start a sign-in that ends at the local path `next`: the flow is stored and the provider's
   * authorization URL returned with the cookie value the browser must present at the callback.
   * A binding the browser already holds (`existingBinding`, from a sign-in started in another
   * tab) is kept, so starting a second flow does not strand the first.
   */
  async begin(next: string, existingBinding?: string): Promise<StartedUpstreamSignIn> {
    let authorization;
    try {
      authorization = await this.deps.provider.beginAuthorization(this.deps.options.callbackUrl);
    } catch (error) {
      throw providerFailure(error);
    }
    // Only a value of the shape this server issues is reused (32 random bytes, base64url).
    const binding = existingBinding !== undefined && /^[A-Za-z0-9_-]{43}$/.test(existingBinding)
      ? existingBinding
      : randomId(32);
    const now = this.now();
    const record: UpstreamFlowRecord = {
      providerId: this.deps.options.providerId,
      nonce: authorization.nonce,
      codeVerifier: authorization.codeVerifier,
      next,
      bindingHash: tokenHash(binding),
      createdAt: now,
      expiresAt: now + UPSTREAM_FLOW_LIFETIME_MS,
    };
    await this.deps.store.putFlow(tokenHash(authorization.state), record);
    return { redirectTo: authorization.url, binding };
  }

  /**
   * Finish a sign-in from the provider's callback parameters and the browser's binding cookie:
   * the flow is spent whatever happens next, the provider's answer checked, and the subject's
   * linked user returned (provisioned on the first sign-in).
   */
  async complete(
    callbackParams: URLSearchParams,
    binding: string | undefined,
  ): Promise<CompletedUpstreamSignIn> {
    const state = callbackParams.get("state");
    if (state === null || state.length === 0 || state.length > 512) {
      throw new UpstreamSignInError("invalid_state", "The sign-in response carries no state.");
    }
    const flow = await this.deps.store.takeFlow(tokenHash(state));
    if (
      flow === null || flow.expiresAt <= this.now() ||
      flow.providerId !== this.deps.options.providerId
    ) {
      throw new UpstreamSignInError(
        "invalid_state",
        "This sign-in is unknown, was already used or has expired. Start again.",
      );
    }
    if (binding === undefined || tokenHash(binding) !== flow.bindingHash) {
      throw new UpstreamSignInError(
        "invalid_state",
        "This sign-in was started in another browser. Start again from this one.",
      );
    }
    let identity;
    try {
      identity = await this.deps.provider.completeAuthorization({
        callbackParams,
        redirectUri: this.deps.options.callbackUrl,
        state,
        nonce: flow.nonce,
        codeVerifier: flow.codeVerifier,
      });
    } catch (error) {
      throw providerFailure(error);
    }
    if (identity.subject.length === 0 || identity.subject.length > MAX_SUBJECT_LENGTH) {
      throw new UpstreamSignInError("provider", "The provider's subject identifier is invalid.");
    }
    const { userId, provisioned } = await this.#userFor(
      identity.issuer,
      identity.subject,
      identity.claims,
    );
    return { userId, next: flow.next, provisioned };
  }

  /**
   * The linked user, checked active; or a new account linked to the subject. Of several first
   * sign-ins of one subject at once (in any process), the one holding the subject's provisioning
   * claim creates the account; the others wait for its link, so the user gets the claim's
   * localpart rather than a suffixed one beside a retired account.
   */
  async #userFor(
    issuer: string,
    subject: string,
    claims: Readonly<Record<string, unknown>>,
  ): Promise<{ userId: string; provisioned: boolean }> {
    const { store } = this.deps;
    const holder = randomId(16);
    for (let poll = 0; poll <= MAX_PROVISIONING_POLLS; poll++) {
      const existing = await store.getLink(issuer, subject);
      if (existing !== null) {
        return { userId: await this.#usable(existing.userId), provisioned: false };
      }
      const expiresAt = this.now() + PROVISIONING_LEASE_MS;
      if (await store.claimProvisioning(issuer, subject, holder, expiresAt)) {
        try {
          return await this.#provisionAndLink(issuer, subject, claims);
        } finally {
          await store.releaseProvisioning(issuer, subject, holder);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, PROVISIONING_POLL_MS));
    }
    throw new UpstreamSignInError(
      "provider",
      "Another sign-in to this account is still being set up. Try again in a moment.",
      503,
    );
  }

  /** Under the subject's claim: the link another holder may have made just before, or a new account. */
  async #provisionAndLink(
    issuer: string,
    subject: string,
    claims: Readonly<Record<string, unknown>>,
  ): Promise<{ userId: string; provisioned: boolean }> {
    const { store, accounts } = this.deps;
    const existing = await store.getLink(issuer, subject);
    if (existing !== null) {
      return { userId: await this.#usable(existing.userId), provisioned: false };
    }
    // The account first, then the link (checked absent in its commit): a crash in between
    // leaves an unlinked passwordless account nobody can sign in to, never a link to nothing.
    const userId = await this.#provision(claims);
    if (await store.createLink({ issuer, subject, userId, linkedAt: this.now() })) {
      return { userId, provisioned: true };
    }
    // Only when this claim outlived its lease and another holder linked meanwhile.
    await accounts.discard(userId).catch((error) =>
      console.error("upstream sign-in: discarding a duplicate account failed", userId, error)
    );
    const winner = await store.getLink(issuer, subject);
    if (winner === null) {
      throw new UpstreamSignInError("provider", "Linking the account failed; try again.", 500);
    }
    return { userId: await this.#usable(winner.userId), provisioned: false };
  }

  async #usable(userId: string): Promise<string> {
    const status = await this.deps.accounts.status(userId);
    if (status !== "active") {
      throw new UpstreamSignInError(
        "deactivated",
        "The account linked to this sign-in has been deactivated.",
        403,
      );
    }
    return userId;
  }

  /** Create the account: the claim's localpart, else with a numeric suffix, else random. */
  async #provision(claims: Readonly<Record<string, unknown>>): Promise<string> {
    const { accounts, options } = this.deps;
    const base = localpartFromClaim(claims[options.localpartClaim], accounts.serverName);
    const candidates: (string | undefined)[] = [];
    if (base !== null) {
      candidates.push(base);
      for (let n = 1; n <= MAX_SUFFIX; n++) candidates.push(`${base}${n}`);
    }
    candidates.push(undefined);
    for (const localpart of candidates) {
      try {
        const userId = await accounts.create(localpart);
        await accounts.initialiseProfile(
          userId,
          displayNameFromClaim(claims[options.displayNameClaim]),
        );
        return userId;
      } catch (error) {
        // A taken (or, for the claim's value, otherwise unusable) name: the next candidate.
        if (
          error instanceof MatrixError && localpart !== undefined &&
          (error.errcode === "M_USER_IN_USE" || error.errcode === "M_INVALID_USERNAME")
        ) {
          continue;
        }
        throw error;
      }
    }
    throw new UpstreamSignInError("provider", "No user ID could be chosen; try again.", 500);
  }
}

/** A provider failure as the error page shows it. */
function providerFailure(error: unknown): UpstreamSignInError {
  if (error instanceof UpstreamSignInError) return error;
  const failure = (error as { failure?: string })?.failure;
  const message = error instanceof Error ? error.message : String(error);
  if (failure === "denied") {
    return new UpstreamSignInError("provider", `The provider refused the sign-in: ${message}`, 403);
  }
  if (failure === "invalid") {
    return new UpstreamSignInError("provider", `The provider's answer failed a check: ${message}`);
  }
  if (failure === "unreachable" || failure === "refused") {
    // The provider, not this server, failed: a bad gateway, as a proxy would say.
    return new UpstreamSignInError("provider", `The provider cannot be reached: ${message}`, 502);
  }
  throw error;
}
