/**
 * User-interactive authentication (spec: "User-Interactive Authentication API"), generic over
 * the endpoint: the caller names its action, offers flows and supplies a handler per stage.
 * Sessions live in storage with an expiry and remember the stages already completed, so a
 * client can complete them over several requests. Reused by registration, password change,
 * deactivation, device deletion and, later, cross-signing key uploads.
 */
import { badJson, MatrixError } from "../errors.ts";
import type { UiaSessionRecord } from "../ports/account_store.ts";
import { randomId } from "./tokens.ts";

/** One way to authenticate: stages completed in order. */
export interface UiaFlow {
  stages: string[];
}

/**
 * Checks one stage's `auth` dict; throws a MatrixError (e.g. 403 M_FORBIDDEN) when it fails.
 * What it returns is merged into the session's `results` (e.g. the accepted token).
 */
export type UiaStageHandler = (
  auth: Record<string, unknown>,
  session: UiaSessionRecord,
) => Promise<Record<string, unknown> | void>;

/** One request that needs user-interactive auth. */
export interface UiaRequest {
  /** What is being authorised; a session started for one action cannot authorise another. */
  action: string;
  /** The authenticated user, when there is one; sessions are bound to it. */
  userId?: string;
  /** The request body's `auth` field as received. */
  auth: unknown;
  flows: UiaFlow[];
  params?: Record<string, unknown>;
  stages: Record<string, UiaStageHandler>;
  /**
   * Exactly what is authorised (which devices, say), bound to the session when it starts: a
   * later request of the session for another operation is refused with 403, as Synapse does.
   */
  operation?: string;
  /**
   * The request's own parameters, stored with the session so a later request of it may omit
   * them (registration: the spec lets the client send `username` and the rest only once).
   * The caller merges; what is given here replaces what the session held.
   */
  clientParams?: Record<string, unknown>;
  /**
   * Keep the session once a flow is complete instead of deleting it, so a retry of the same
   * completed request is recognised (registration answers it with the same user).
   */
  keepCompleted?: boolean;
}

/**
 * Thrown by a stage handler to refuse the whole request rather than fail the stage: the client
 * gets this error as it is instead of a new 401 challenge (e.g. credentials of another user
 * than the one making the request: 403, as Synapse answers).
 */
export class UiaRefusal extends MatrixError {}

/** Where UIA sessions are kept. */
export interface UiaSessionStore {
  getUiaSession(id: string): Promise<UiaSessionRecord | null>;
  putUiaSession(session: UiaSessionRecord): Promise<void>;
  deleteUiaSession(id: string): Promise<void>;
}

/** How long a client has to finish the stages of one session. */
export const UIA_SESSION_LIFETIME_MS = 15 * 60_000;

/**
 * The 401 that tells a client what to do next: `{flows, params, session, completed?}` and,
 * after a failed stage, `errcode` and `error`. A first challenge carries no errcode, because
 * clients such as matrix-js-sdk show any errcode to the user as a failure.
 */
export class UiaRequiredError extends MatrixError {
  /** Build from the challenge body and, after a failed stage, that stage's error. */
  constructor(readonly body: Record<string, unknown>, readonly failure?: MatrixError) {
    super(failure?.errcode ?? "M_UNAUTHORIZED", 401, failure?.message ?? "Authentication required");
  }

  /** The challenge body, with the failure's errcode only when a stage failed. */
  override toJSON(): Record<string, unknown> {
    return this.failure
      ? { errcode: this.failure.errcode, error: this.failure.message, ...this.body }
      : { ...this.body };
  }
}

/** Runs user-interactive auth over a session store. */
export class UserInteractiveAuth {
  /** `now` is injectable for expiry tests. */
  constructor(
    private readonly store: UiaSessionStore,
    private readonly now: () => number = Date.now,
    private readonly lifetimeMs = UIA_SESSION_LIFETIME_MS,
  ) {}

  /**
   * Authenticate `request`: resolves with the finished session when a flow is complete, and
   * throws UiaRequiredError (401) with the next challenge otherwise.
   */
  async authenticate(request: UiaRequest): Promise<UiaSessionRecord> {
    const { auth } = request;
    if (auth === undefined || auth === null) {
      throw this.challenge(request, await this.newSession(request));
    }
    if (typeof auth !== "object" || Array.isArray(auth)) throw badJson("'auth' must be an object");
    const dict = auth as Record<string, unknown>;
    const session = await this.sessionFor(request, dict.session);

    const type = dict.type;
    if (type !== undefined) {
      if (typeof type !== "string") throw badJson("'auth.type' must be a string");
      const handler = request.stages[type];
      if (!handler || !this.isNextStage(request.flows, session.completed, type)) {
        throw new MatrixError("M_UNRECOGNIZED", 400, `Authentication stage ${type} is not offered`);
      }
      try {
        const results = await handler(dict, session);
        if (!session.completed.includes(type)) session.completed.push(type);
        Object.assign(session.results, results ?? {});
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        // A rate limit is no failed stage: the client must wait, not retry the stage now.
        if (error.status === 429 || error instanceof UiaRefusal) throw error;
        await this.store.putUiaSession(session);
        throw this.challenge(request, session, error);
      }
    }

    if (request.clientParams !== undefined) session.params = request.clientParams;
    if (request.flows.some((f) => f.stages.every((s) => session.completed.includes(s)))) {
      if (request.keepCompleted) await this.store.putUiaSession(session);
      else await this.store.deleteUiaSession(session.id);
      return session;
    }
    await this.store.putUiaSession(session);
    throw this.challenge(request, session);
  }

  private async sessionFor(request: UiaRequest, id: unknown): Promise<UiaSessionRecord> {
    if (id === undefined) return this.newSession(request, false);
    if (typeof id !== "string") throw badJson("'auth.session' must be a string");
    const session = await this.store.getUiaSession(id);
    if (!session || session.action !== request.action || session.userId !== request.userId) {
      // Either expired or started for something else: neither may authorise this request.
      throw new MatrixError("M_UNKNOWN", 400, "Unknown or expired authentication session");
    }
    if (session.operation !== request.operation) {
      throw new MatrixError(
        "M_FORBIDDEN",
        403,
        "Requested operation has changed during the UI authentication session",
      );
    }
    return session;
  }

  /**
   * A live session of `action` as stored, without touching it (null when unknown or expired):
   * lets a caller see what an earlier request of the session left (parameters, results).
   */
  async peek(id: unknown, action: string): Promise<UiaSessionRecord | null> {
    if (typeof id !== "string") return null;
    const session = await this.store.getUiaSession(id);
    return session?.action === action ? session : null;
  }

  /**
   * The action a live session of `userId` authorises (null when unknown, expired or another
   * user's): the fallback page tells the user what they are confirming.
   */
  async actionInBrowser(id: string, userId: string): Promise<string | null> {
    const session = await this.store.getUiaSession(id);
    if (!session || session.expiresAt <= this.now() || session.userId !== userId) return null;
    return session.action;
  }

  /**
   * Complete `stage` of session `id` outside the API: a fallback page where the user proved who
   * they are in the browser (`m.login.sso`). Only the session's own user may, while it lives;
   * the client then retries its request with the session alone.
   */
  async completeInBrowser(
    id: string,
    stage: string,
    userId: string,
  ): Promise<"completed" | "unknown" | "other_user"> {
    const session = await this.store.getUiaSession(id);
    if (!session || session.expiresAt <= this.now()) return "unknown";
    if (session.userId !== userId) return "other_user";
    if (!session.completed.includes(stage)) session.completed.push(stage);
    await this.store.putUiaSession(session);
    return "completed";
  }

  /** Record what a completed session's request did (e.g. the user it registered). */
  async remember(session: UiaSessionRecord, results: Record<string, unknown>): Promise<void> {
    await this.store.putUiaSession({ ...session, results: { ...session.results, ...results } });
  }

  private async newSession(request: UiaRequest, store = true): Promise<UiaSessionRecord> {
    const session: UiaSessionRecord = {
      id: randomId(18),
      action: request.action,
      completed: [],
      results: {},
      expiresAt: this.now() + this.lifetimeMs,
    };
    if (request.userId !== undefined) session.userId = request.userId;
    if (request.operation !== undefined) session.operation = request.operation;
    if (request.clientParams !== undefined) session.params = request.clientParams;
    if (store) await this.store.putUiaSession(session);
    return session;
  }

  /** A stage may run when some flow has the completed stages as its prefix and it comes next. */
  private isNextStage(flows: UiaFlow[], completed: string[], type: string): boolean {
    return flows.some((flow) =>
      completed.every((s, i) => flow.stages[i] === s) &&
      (flow.stages[completed.length] === type || completed.includes(type))
    );
  }

  private challenge(
    request: UiaRequest,
    session: UiaSessionRecord,
    cause?: MatrixError,
  ): UiaRequiredError {
    const body: Record<string, unknown> = {
      flows: request.flows,
      params: request.params ?? {},
      session: session.id,
      // Always present, empty too: SyTest and Synapse expect the key after a failed stage.
      completed: [...session.completed],
    };
    return new UiaRequiredError(body, cause);
  }
}
