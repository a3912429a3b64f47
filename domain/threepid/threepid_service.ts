/**
 * The third-party identifiers of accounts: the list a client shows, adding an address the
 * homeserver validated, deleting one, binding and unbinding at identity servers (remembering
 * where, so an unbind without a named server and a deactivation find them), and the owner
 * look-up that 3PID login and password reset use.
 */
import { MatrixError } from "../errors.ts";
import type { ThreepidStore, UserThreepidRecord } from "../ports/threepid_store.ts";
import {
  canonicalEmail,
  checkClientSecret,
  type ThreepidValidation,
} from "./threepid_validation.ts";
import { checkIdServer, type IdentityServerClient } from "./identity_server_client.ts";

/** The media a client may name. */
export const THREEPID_MEDIA = ["email", "msisdn"] as const;

/** The canonical form of an address of `medium` (emails lower-cased, numbers as digits). */
export function canonicalAddress(medium: string, address: string): string {
  if (medium === "email") return canonicalEmail(address);
  if (medium === "msisdn") return address.replace(/[^0-9]/g, "");
  throw new MatrixError("M_INVALID_PARAM", 400, `Unknown medium ${JSON.stringify(medium)}`);
}

/** What the client sees of one identifier (`GET /account/3pid`). */
export interface ThreepidView {
  medium: string;
  address: string;
  validated_at: number;
  added_at: number;
}

/** Construction options of ThreepidService. */
export interface ThreepidServiceOptions {
  store: ThreepidStore;
  validation: ThreepidValidation;
  identity: IdentityServerClient;
  now?: () => number;
}

/** Account identifiers and their identity-server bindings. */
export class ThreepidService {
  readonly #store: ThreepidStore;
  readonly #identity: IdentityServerClient;
  readonly #now: () => number;
  /** The homeserver's own validation sessions. */
  readonly validation: ThreepidValidation;

  /** Build over the store, the validation sessions and an identity server client. */
  constructor(options: ThreepidServiceOptions) {
    this.#store = options.store;
    this.validation = options.validation;
    this.#identity = options.identity;
    this.#now = options.now ?? Date.now;
  }

  /** The user's identifiers as the spec lists them. */
  async list(userId: string): Promise<ThreepidView[]> {
    return (await this.#store.listThreepids(userId)).map((t) => ({
      medium: t.medium,
      address: t.address,
      validated_at: t.validatedAt,
      added_at: t.addedAt,
    }));
  }

  /** The local user who owns an identifier, or null. */
  ownerOf(medium: string, address: string): Promise<string | null> {
    return this.#store.ownerOf(medium, canonicalAddress(medium, address));
  }

  /**
   * Add the address of a session this server validated to the user's account (`/3pid/add`,
   * the deprecated `POST /account/3pid`). 400 M_THREEPID_AUTH_FAILED when there is no such
   * validated session, 400 M_THREEPID_IN_USE when another account has the address.
   */
  async addFromSession(userId: string, sid: string, clientSecret: string): Promise<void> {
    const session = await this.validation.validatedSession(sid, checkClientSecret(clientSecret));
    if (!session) {
      throw new MatrixError("M_THREEPID_AUTH_FAILED", 400, "No validated 3pid session found");
    }
    await this.addValidated(userId, {
      medium: session.medium,
      address: session.address,
      validatedAt: session.validatedAt ?? this.#now(),
      addedAt: this.#now(),
    });
  }

  /** Whether a validated session of this server exists for these credentials. */
  async hasValidatedSession(sid: string, clientSecret: string): Promise<boolean> {
    return (await this.validation.validatedSession(sid, clientSecret)) !== null;
  }

  /** Add an identifier already proven (registration's email stage). */
  async addValidated(userId: string, threepid: UserThreepidRecord): Promise<void> {
    const outcome = await this.#store.addThreepid(userId, threepid);
    if (outcome === "in_use") {
      throw new MatrixError("M_THREEPID_IN_USE", 400, "That address is already in use");
    }
  }

  /**
   * Bind an identifier the identity server validated (its `sid`) to the user there, and
   * remember where; the identity server's errors reach the client as they were.
   */
  async bind(
    userId: string,
    request: { idServer: string; idAccessToken: string; sid: string; clientSecret: string },
  ): Promise<void> {
    const idServer = checkIdServer(request.idServer);
    const bound = await this.#identity.bind(idServer, request.idAccessToken, {
      sid: request.sid,
      clientSecret: checkClientSecret(request.clientSecret),
      mxid: userId,
    });
    await this.#store.addBinding(userId, { ...bound, idServer });
  }

  /**
   * Unbind an identifier from `idServer`, or from every server it was bound on through us.
   * True when every identity server confirmed; false when there was none to ask or one does
   * not support unbinding (the spec's `no-support`). Throws 502 when one cannot be reached.
   */
  async unbind(
    userId: string,
    threepid: { medium: string; address: string; idServer?: string },
  ): Promise<boolean> {
    const { medium, address } = threepid;
    const servers = threepid.idServer !== undefined
      ? [checkIdServer(threepid.idServer)]
      : (await this.#store.bindings(userId, { medium, address })).map((b) => b.idServer);
    if (servers.length === 0) return false;
    let all = true;
    for (const idServer of servers) {
      const ok = await this.#identity.unbind(idServer, userId, { medium, address });
      all &&= ok;
      await this.#store.removeBinding(userId, { medium, address, idServer });
    }
    return all;
  }

  /**
   * Remove an identifier from the account and unbind it (from `idServer` or where it was
   * bound); returns whether the unbind succeeded. An identity server that cannot be reached (or
   * may no longer be contacted) does not keep the address on the account: the unbind result
   * says `no-support` instead.
   */
  async delete(
    userId: string,
    medium: string,
    rawAddress: string,
    idServer?: string,
  ): Promise<boolean> {
    const address = canonicalAddressOrRaw(medium, rawAddress);
    let unbound = false;
    try {
      unbound = await this.unbind(userId, { medium, address, idServer });
    } catch (error) {
      // A bad id_server from the client is its mistake; an identity server that is down or no
      // longer allowed must not keep the address on the account.
      if (!(error instanceof MatrixError) || error.errcode === "M_INVALID_PARAM") throw error;
      console.warn("unbinding a deleted 3pid failed", userId, medium, error.message);
    }
    await this.#store.removeThreepid(userId, medium, address);
    return unbound;
  }

  /**
   * On deactivation: delete every identifier of the account and unbind every binding; true
   * when there was something to unbind and every unbind succeeded (`id_server_unbind_result:
   * success`; with nothing to unbind the answer stays `no-support`). Idempotent.
   */
  async removeAll(userId: string, idServer?: string): Promise<boolean> {
    let all = true;
    let any = false;
    for (const t of await this.#store.listThreepids(userId)) {
      any = true;
      all = (await this.delete(userId, t.medium, t.address, idServer)) && all;
    }
    // Bindings made through /3pid/bind of addresses never added to the account.
    const seen = new Set<string>();
    for (const b of await this.#store.bindings(userId)) {
      const key = `${b.medium}\u0000${b.address}`;
      if (seen.has(key)) continue;
      seen.add(key);
      any = true;
      all = (await this.delete(userId, b.medium, b.address, idServer)) && all;
    }
    return any && all;
  }
}

/** Canonical when the medium is known; other media keep the address as given. */
function canonicalAddressOrRaw(medium: string, address: string): string {
  return THREEPID_MEDIA.includes(medium as "email") ? canonicalAddress(medium, address) : address;
}
