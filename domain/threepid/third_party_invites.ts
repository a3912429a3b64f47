/**
 * Third-party invites (spec: "Third-party invites"): inviting by email through an identity
 * server. When the address is bound to a Matrix ID, that user is invited as usual; otherwise the
 * identity server stores the invite (and mails the invitee), and the room gets an
 * m.room.third_party_invite event whose keys can later vouch for whoever binds the address.
 * When that happens the identity server calls `/3pid/onbind`, and `exchange` turns the signed
 * proof into an m.room.member invite from the original inviter, which the auth rules check
 * against the third-party invite (domain/third_party_invite_auth.ts).
 */
import { forbidden, MatrixError } from "../errors.ts";
import { isValidUserId } from "../protocol/identifiers.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import type { Rooms } from "../rooms/rooms.ts";
import { RoomState } from "../rooms/room_state.ts";
import { isLocal, memberContent } from "../rooms/room_services.ts";
import { verifyThirdPartyInviteEd25519 } from "../protocol/third_party_invite_auth.ts";
import { checkIdServer, type IdentityServerClient } from "./identity_server_client.ts";
import { canonicalAddress } from "./threepid_service.ts";

/** One invite by third-party identifier, as `/invite` and `createRoom`'s `invite_3pid` give it. */
export interface ThirdPartyInviteRequest {
  idServer: string;
  idAccessToken: string;
  medium: string;
  address: string;
}

/** A public key an m.room.third_party_invite event offers, with where to check it. */
interface OfferedKey {
  public_key: string;
  key_validity_url?: string;
}

/** Sending third-party invites and exchanging them once the address is bound. */
export class ThirdPartyInvites {
  /**
   * Build over an identity server client and the rooms services (a getter: the server's
   * assembly builds rooms and these services side by side).
   */
  constructor(
    private readonly identity: IdentityServerClient,
    private readonly roomsOf: () => Rooms,
  ) {}

  private get rooms(): Rooms {
    return this.roomsOf();
  }

  /**
   * Invite by identifier: the bound user directly, or a third-party invite the identity server
   * stores. The inviter must be joined and allowed to invite (checked before the identity server
   * is told anything); the auth rules decide the event itself.
   */
  async invite(inviter: string, roomId: string, request: ThirdPartyInviteRequest): Promise<void> {
    const idServer = checkIdServer(request.idServer);
    const address = canonicalAddress(request.medium, request.address);
    const deps = this.rooms.deps;
    const state = await RoomState.open(deps.store, roomId);
    if ((await state.membership(inviter)) !== "join") throw forbidden("You are not in this room");
    if ((await state.userLevel(inviter)) < (await state.powerLevels()).invite) {
      throw forbidden("You may not invite users to this room");
    }
    const mxid = await this.identity.lookup(
      idServer,
      request.idAccessToken,
      request.medium,
      address,
    );
    if (mxid !== null) {
      if (!isValidUserId(mxid)) {
        throw new MatrixError("M_UNKNOWN", 502, "Identity server gave an invalid user ID");
      }
      await this.rooms.membership.invite(inviter, roomId, mxid);
      return;
    }
    const profile = await deps.profile?.(inviter);
    const canonicalAlias = (await state.content("m.room.canonical_alias"))?.alias;
    const name = (await state.content("m.room.name"))?.name;
    const avatar = (await state.content("m.room.avatar"))?.url;
    const roomType = (await state.content("m.room.create"))?.type;
    const stored = await this.identity.storeInvite(idServer, request.idAccessToken, {
      medium: request.medium,
      address,
      room_id: roomId,
      sender: inviter,
      room_join_rules: await state.joinRule(),
      ...(typeof canonicalAlias === "string" ? { room_alias: canonicalAlias } : {}),
      ...(typeof name === "string" ? { room_name: name } : {}),
      ...(typeof avatar === "string" ? { room_avatar_url: avatar } : {}),
      ...(typeof roomType === "string" ? { room_type: roomType } : {}),
      ...(typeof profile?.displayname === "string"
        ? { sender_display_name: profile.displayname }
        : {}),
      ...(typeof profile?.avatar_url === "string" ? { sender_avatar_url: profile.avatar_url } : {}),
    });
    await deps.sender.send({
      roomId,
      sender: inviter,
      type: "m.room.third_party_invite",
      stateKey: stored.token,
      content: {
        display_name: stored.displayName,
        key_validity_url: stored.fallbackPublicKey.key_validity_url,
        public_key: stored.fallbackPublicKey.public_key,
        public_keys: stored.publicKeys,
      },
    });
  }

  /**
   * Turn a signed third-party invite into a member invite of `target` from `sender` (the
   * original inviter, who may have left since: the auth rules allow that). The signature must
   * verify against a key of the room's m.room.third_party_invite event for the token, and the
   * identity server must still vouch for that key (403 when it does not, 502 when it cannot be
   * asked). Only rooms and inviters of this server: forwarding needs federation.
   */
  async exchange(sender: string, target: string, roomId: string, signed: unknown): Promise<void> {
    if (!isJsonObject(signed) || typeof signed.token !== "string") {
      throw new MatrixError("M_INVALID_PARAM", 400, "signed must carry a token");
    }
    if (signed.mxid !== target || !isValidUserId(target)) {
      throw new MatrixError("M_INVALID_PARAM", 400, "signed.mxid must be the invited user");
    }
    const deps = this.rooms.deps;
    if (!isValidUserId(sender) || !isLocal(sender, deps.serverName)) {
      throw forbidden("Only invites sent from this server can be exchanged here");
    }
    const state = await RoomState.open(deps.store, roomId);
    const invite = await state.content("m.room.third_party_invite", signed.token);
    if (invite === undefined) throw forbidden("No third-party invite matches the token");
    await this.#checkSignature(signed, invite, state);
    const content = await memberContent(deps, target, "invite", {
      third_party_invite: {
        ...(typeof invite.display_name === "string" ? { display_name: invite.display_name } : {}),
        signed,
      },
    });
    await deps.sender.send({
      roomId,
      sender,
      type: "m.room.member",
      stateKey: target,
      content,
      extraMutations: () => deps.directory.forgottenMutations(target, roomId, false),
    });
  }

  /** Find a key of `invite` that signed `signed` and ask whether it is still valid. */
  async #checkSignature(signed: JsonObject, invite: JsonObject, state: RoomState): Promise<void> {
    const offered: OfferedKey[] = [];
    if (Array.isArray(invite.public_keys)) {
      for (const entry of invite.public_keys) {
        if (isJsonObject(entry) && typeof entry.public_key === "string") {
          offered.push({
            public_key: entry.public_key,
            ...(typeof entry.key_validity_url === "string"
              ? { key_validity_url: entry.key_validity_url }
              : {}),
          });
        }
      }
    }
    if (typeof invite.public_key === "string") {
      offered.push({
        public_key: invite.public_key,
        ...(typeof invite.key_validity_url === "string"
          ? { key_validity_url: invite.key_validity_url }
          : {}),
      });
    }
    const signatures = signed.signatures;
    let lastError: MatrixError = forbidden("The third-party invite's signature does not verify");
    for (const key of offered) {
      if (!isJsonObject(signatures)) break;
      const verified = Object.entries(signatures).some(([server, byKey]) =>
        isJsonObject(byKey) &&
        Object.keys(byKey).some((keyId) =>
          keyId.startsWith("ed25519:") &&
          verifyThirdPartyInviteEd25519(signed, server, keyId, key.public_key, state.version)
        )
      );
      if (!verified) continue;
      if (key.key_validity_url === undefined) return;
      try {
        if (await this.identity.isKeyValid(key.key_validity_url, key.public_key)) return;
        lastError = forbidden("Third party certificate was invalid");
      } catch (error) {
        if (!(error instanceof MatrixError)) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }
}
