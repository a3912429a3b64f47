/**
 * `POST /register` as a use case over user-interactive auth: the parameters a client gives in
 * the first request of a session count for the whole session (the spec lets it send only `auth`
 * afterwards), a retried request of a session that already registered answers with the same
 * user instead of failing or making a second account, and a guest may register its own user ID
 * (Synapse's `guest_access_token`) to become a full account.
 *
 * The session keeps the parameters with the password already hashed, never in clear, and the
 * guest as a user ID rather than its token. Two requests completing one session at the same
 * instant can still both register (the session is read before the account commit, not in it):
 * with a username the second gets M_USER_IN_USE, without one it makes a second account.
 */
import { forbidden, MatrixError } from "../errors.ts";
import type { AccountService, IssuedSession } from "./account_service.ts";
import type { UiaFlow, UiaStageHandler, UserInteractiveAuth } from "./user_interactive_auth.ts";

/** The registration body's parameters, as validated at the edge. */
export interface RegistrationRequest {
  auth?: unknown;
  username?: string;
  password?: string;
  device_id?: string;
  initial_device_display_name?: string;
  inhibit_login?: boolean;
  refresh_token?: boolean;
  guest_access_token?: string;
}

/** What a registration session remembers between its requests. */
interface StoredParams {
  username?: string;
  passwordHash?: string;
  deviceId?: string;
  displayName?: string;
  inhibitLogin?: boolean;
  refreshToken?: boolean;
  /** The guest account being upgraded (resolved from `guest_access_token`). */
  guestUserId?: string;
}

/** The UIA action of registration sessions. */
const ACTION = "register";
/** Where a completed session records the user it registered. */
const REGISTERED = "registeredUserId";

/** The registration use case. */
export class Registration {
  /** Over the accounts (which also resolve guest tokens) and user-interactive auth. */
  constructor(
    private readonly accounts: AccountService,
    private readonly uia: UserInteractiveAuth,
  ) {}

  /**
   * Register (or upgrade a guest) once `flows` are complete; throws the UIA challenge until
   * then. Returns the new session, or only the user ID with `inhibit_login`.
   */
  async register(
    request: RegistrationRequest,
    flows: { flows: UiaFlow[]; stages: Record<string, UiaStageHandler> },
  ): Promise<{ userId: string } & Partial<IssuedSession>> {
    const auth = request.auth;
    const sessionId = typeof auth === "object" && auth !== null && !Array.isArray(auth)
      ? (auth as Record<string, unknown>).session
      : undefined;
    const prior = await this.uia.peek(sessionId, ACTION);
    const registered = prior?.results[REGISTERED];
    const params = givesParams(request)
      ? await this.paramsOf(request, typeof registered === "string" ? registered : undefined)
      : (prior?.params ?? {}) as StoredParams;

    const session = await this.uia.authenticate({
      action: ACTION,
      auth,
      ...flows,
      clientParams: params as Record<string, unknown>,
      keepCompleted: true,
    });
    const device = {
      deviceId: params.deviceId,
      displayName: params.displayName,
      refreshToken: params.refreshToken,
    };
    const already = session.results[REGISTERED];
    if (typeof already === "string") {
      return params.inhibitLogin
        ? { userId: already }
        : await this.accounts.loginRegistered(already, device);
    }
    const result = params.guestUserId !== undefined
      ? await this.accounts.guests.upgrade(params.guestUserId, {
        ...device,
        passwordHash: params.passwordHash,
        inhibitLogin: params.inhibitLogin,
      })
      : await this.accounts.register({
        ...device,
        localpart: params.username,
        passwordHash: params.passwordHash,
        inhibitLogin: params.inhibitLogin,
      });
    await this.uia.remember(session, { [REGISTERED]: result.userId });
    return result;
  }

  /**
   * Check and store one request's parameters: the username is checked before anything is
   * hashed, so a taken or bad name is reported before the client goes through the stages.
   */
  private async paramsOf(request: RegistrationRequest, registered?: string): Promise<StoredParams> {
    const params: StoredParams = {};
    if (request.guest_access_token !== undefined) {
      params.guestUserId = await this.guestOf(request.guest_access_token);
    }
    if (request.username !== undefined) {
      params.username = request.username.toLowerCase();
      const userId = `@${params.username}:${this.accounts.serverName}`;
      if (params.guestUserId !== undefined) {
        if (userId !== params.guestUserId) {
          throw forbidden("A guest can only register its own user ID");
        }
      } else if (registered !== undefined && userId !== registered) {
        // A retry may repeat the request, not change whom it registers.
        throw new MatrixError(
          "M_UNKNOWN",
          400,
          "This registration session already registered another user",
        );
      } else if (registered === undefined) {
        await this.accounts.checkAvailable(params.username);
      }
    }
    if (request.password !== undefined) {
      params.passwordHash = await this.accounts.hashNewPassword(request.password);
    }
    if (request.device_id !== undefined) params.deviceId = request.device_id;
    if (request.initial_device_display_name !== undefined) {
      params.displayName = request.initial_device_display_name;
    }
    if (request.inhibit_login !== undefined) params.inhibitLogin = request.inhibit_login;
    if (request.refresh_token !== undefined) params.refreshToken = request.refresh_token;
    return params;
  }

  /** The guest account a `guest_access_token` belongs to; 403 for any other token. */
  private async guestOf(token: string): Promise<string> {
    const session = await this.accounts.resolveAccessToken(token).catch((error) => {
      if (error instanceof MatrixError && error.status === 401) return null;
      throw error;
    });
    if (!session?.isGuest) throw forbidden("guest_access_token is not a guest's access token");
    return session.userId;
  }
}

/**
 * Whether a request brings its own parameters, replacing the session's. A display name alone
 * does not (as in Synapse: some clients resend only it, which would wipe the rest).
 */
function givesParams(request: RegistrationRequest): boolean {
  return request.username !== undefined || request.password !== undefined ||
    request.device_id !== undefined || request.inhibit_login !== undefined ||
    request.refresh_token !== undefined || request.guest_access_token !== undefined;
}
