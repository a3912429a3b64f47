/**
 * Email validation by the homeserver itself (spec: `.../email/requestToken`): a session per
 * client secret and address, a token mailed as a link, and the link (or `submitToken`) marking
 * the session validated. Registration, password reset and adding an address to an account then
 * accept the session's `sid` and `client_secret` as proof the user reads that mailbox.
 * Sessions live in KV, so a link mailed by one process is honoured by any other.
 */
import { MatrixError } from "../errors.ts";
import type { Mailer } from "../ports/mailer.ts";
import type { ThreepidSessionRecord, ThreepidStore } from "../ports/threepid_store.ts";
import { randomId, tokenHash } from "../accounts/tokens.ts";
import { sameSecret } from "../accounts/uia_stages.ts";

/** How long a mailed token may be used (Synapse's email_validation_token_lifetime: 1 h). */
export const EMAIL_TOKEN_LIFETIME_MS = 60 * 60_000;
/** How long a validated session may still be spent (on registration, adding the address). */
export const VALIDATED_SESSION_LIFETIME_MS = 24 * 60 * 60_000;

/** What a validation is for: it decides the checks, the mail's wording and the link's path. */
export type ValidationPurpose = "register" | "add_threepid" | "password_reset";

/** The link path (under the public base URL) the mail of each purpose points to. */
export const SUBMIT_TOKEN_PATHS: Readonly<Record<ValidationPurpose, string>> = Object.freeze({
  register: "/_matrix/client/unstable/registration/email/submit_token",
  add_threepid: "/_matrix/client/unstable/add_threepid/email/submit_token",
  password_reset: "/_matrix/client/unstable/password_reset/email/submit_token",
});

const SUBJECTS: Readonly<Record<ValidationPurpose, string>> = Object.freeze({
  register: "Validate your email address to register",
  add_threepid: "Validate your email address",
  password_reset: "Reset your password",
});

/** 400 M_INVALID_PARAM unless the spec's client secret grammar holds: `[0-9a-zA-Z.=_-]{1,255}`. */
export function checkClientSecret(clientSecret: string): string {
  if (!/^[0-9a-zA-Z.=_-]{1,255}$/.test(clientSecret)) {
    throw new MatrixError("M_INVALID_PARAM", 400, "Invalid client_secret");
  }
  return clientSecret;
}

/**
 * The canonical form of an email address: trimmed and lower-cased, as Synapse's
 * canonicalise_email stores it; 400 M_INVALID_PARAM when it is not an address at all.
 */
export function canonicalEmail(address: string): string {
  const email = address.trim().toLowerCase();
  const at = email.lastIndexOf("@");
  if (email.length > 254 || at < 1 || at === email.length - 1 || /[\s<>,;"]/.test(email)) {
    throw new MatrixError("M_INVALID_PARAM", 400, "Invalid email address");
  }
  return email;
}

/** One requestToken call. */
export interface EmailTokenRequest {
  purpose: ValidationPurpose;
  email: string;
  clientSecret: string;
  sendAttempt: number;
  nextLink?: string;
}

/** Construction options of ThreepidValidation. */
export interface ThreepidValidationOptions {
  store: ThreepidStore;
  /** Absent when no SMTP server is configured: email validation is then refused. */
  mailer?: Mailer;
  /** The server's public base URL, without a trailing slash, for the links in mails. */
  publicBaseUrl: string;
  now?: () => number;
}

/** The homeserver's own 3PID validation sessions. */
export class ThreepidValidation {
  readonly #store: ThreepidStore;
  readonly #mailer?: Mailer;
  readonly #baseUrl: string;
  readonly #now: () => number;

  /** Build over a store and, when email is configured, a mailer. */
  constructor(options: ThreepidValidationOptions) {
    this.#store = options.store;
    this.#mailer = options.mailer;
    this.#baseUrl = options.publicBaseUrl;
    this.#now = options.now ?? Date.now;
  }

  /** Whether this server can validate email addresses (an SMTP server is configured). */
  get canValidateEmail(): boolean {
    return this.#mailer !== undefined;
  }

  /**
   * Start (or continue) a session and mail its link; returns the session ID. A repeat with the
   * same client secret, address and a `send_attempt` not above the last one sends nothing and
   * returns the same ID, as the spec asks. The caller has done the purpose's checks (address
   * free, or known for a password reset).
   */
  async requestEmailToken(request: EmailTokenRequest): Promise<string> {
    const mailer = this.#mailer;
    if (mailer === undefined) {
      throw new MatrixError(
        "M_THREEPID_MEDIUM_NOT_SUPPORTED",
        400,
        "Email is not configured on this server",
      );
    }
    const clientSecret = checkClientSecret(request.clientSecret);
    const address = canonicalEmail(request.email);
    const nextLink = request.nextLink === undefined ? undefined : checkNextLink(request.nextLink);
    const pending = await this.#store.findPendingSession("email", clientSecret, address);
    if (pending && pending.expiresAt > this.#now() && request.sendAttempt <= pending.sendAttempt) {
      return pending.sid;
    }
    const sid = pending?.sid ?? randomId(12);
    const token = randomId(24);
    const link = new URL(this.#baseUrl + SUBMIT_TOKEN_PATHS[request.purpose]);
    link.searchParams.set("token", token);
    link.searchParams.set("client_secret", clientSecret);
    link.searchParams.set("sid", sid);
    const session: ThreepidSessionRecord = {
      sid,
      medium: "email",
      address,
      clientSecret,
      tokenHash: tokenHash(token),
      sendAttempt: request.sendAttempt,
      expiresAt: this.#now() + EMAIL_TOKEN_LIFETIME_MS,
    };
    if (nextLink !== undefined) session.nextLink = withSid(nextLink, sid);
    // Stored first: a link clicked the moment it arrives must find its session.
    await this.#store.putSession(session);
    try {
      await mailer.send({
        to: address,
        subject: SUBJECTS[request.purpose],
        text: mailText(request.purpose, link.href),
      });
    } catch (error) {
      console.error("sending a validation email failed", error);
      throw new MatrixError("M_UNKNOWN", 502, "The validation email could not be sent");
    }
    return sid;
  }

  /**
   * The link or `submitToken`: mark the session validated when the secret and token match and
   * the token is still live. Returns the session's next link, if it has one. Submitting a
   * validated session's token again succeeds (mail scanners follow links too).
   */
  async submitToken(
    sid: string,
    clientSecret: string,
    token: string,
  ): Promise<{ nextLink?: string }> {
    const refused = () =>
      new MatrixError("M_THREEPID_AUTH_FAILED", 400, "Invalid or expired validation token");
    for (let attempt = 0; attempt < 3; attempt++) {
      const session = await this.#store.getSession(sid);
      if (
        !session || !sameSecret(session.clientSecret, clientSecret) ||
        !sameSecret(session.tokenHash, tokenHash(token))
      ) throw refused();
      if (session.validatedAt !== undefined) return { nextLink: session.nextLink };
      const now = this.#now();
      if (session.expiresAt <= now) throw refused();
      const validated: ThreepidSessionRecord = {
        ...session,
        validatedAt: now,
        // What is left to do with it (register, add the address) gets a day.
        expiresAt: now + VALIDATED_SESSION_LIFETIME_MS,
      };
      if (await this.#store.replaceSession(session, validated)) {
        return { nextLink: session.nextLink };
      }
    }
    throw refused();
  }

  /**
   * The validated session `sid` with this client secret, or null (unknown, not validated yet,
   * or expired): what registration, password reset and `/3pid/add` accept as proof.
   */
  async validatedSession(sid: string, clientSecret: string): Promise<ThreepidSessionRecord | null> {
    const session = await this.#store.getSession(sid);
    if (!session || !sameSecret(session.clientSecret, clientSecret)) return null;
    if (session.validatedAt === undefined || session.expiresAt <= this.#now()) return null;
    return session;
  }
}

/** 400 M_INVALID_PARAM unless `next_link` is an http(s) URL (never file: or javascript:). */
function checkNextLink(nextLink: string): string {
  let url: URL;
  try {
    url = new URL(nextLink);
  } catch {
    throw new MatrixError("M_INVALID_PARAM", 400, "next_link is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new MatrixError("M_INVALID_PARAM", 400, "next_link must be an http(s) URL");
  }
  return url.href;
}

function withSid(nextLink: string, sid: string): string {
  const url = new URL(nextLink);
  url.searchParams.set("sid", sid);
  return url.href;
}

function mailText(purpose: ValidationPurpose, link: string): string {
  const why = purpose === "password_reset"
    ? "A password reset was requested for the Matrix account with this email address."
    : purpose === "register"
    ? "This email address was given to register a Matrix account."
    : "This email address was given to be added to a Matrix account.";
  return `${why}\n\nTo confirm, follow this link:\n\n${link}\n\n` +
    "If this was not you, ignore this email: nothing happens without the link.\n";
}
