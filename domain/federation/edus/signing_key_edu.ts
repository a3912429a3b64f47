/**
 * Inbound `m.signing_key_update` EDUs (spec, Server-Server API: "Cross-signing keys"): a user of
 * the sending server changed their master and/or self-signing key (`{user_id, master_key?,
 * self_signing_key?}`). The remote device-list cache replaces the keys it holds and local
 * users sharing a room hear of it in `device_lists.changed`.
 *
 * Dropped: a user of another server, one sharing no room with us (the cache checks), and keys
 * without the spec's shape (filed under another user, another usage, not one ed25519 key);
 * a malformed key drops only itself.
 */
import type { JsonObject } from "../../protocol/json.ts";
import { parseUserId } from "../../protocol/identifiers.ts";
import type { RemoteDeviceCache, SigningKeyUpdate } from "../../e2ee/remote_device_cache.ts";
import type { EduHandler } from "../edu_input.ts";
import { checkedCrossSigningKey } from "../remote_keys.ts";

/** The EDU type. */
export const SIGNING_KEY_UPDATE_EDU = "m.signing_key_update";

/** Hands valid cross-signing key updates from their user's own server to the cache. */
export class SigningKeyEduHandler implements EduHandler {
  /** Over the cache. */
  constructor(
    private readonly cache: Pick<RemoteDeviceCache, "applySigningKeys">,
    private readonly log: (message: string, ...details: unknown[]) => void = console.warn,
  ) {}

  /** Take one EDU (see the module comment). */
  async handle(origin: string, content: JsonObject): Promise<void> {
    await this.take(origin, content);
  }

  /** As `handle`, saying whether the cache took it (tests). */
  async take(origin: string, content: JsonObject): Promise<boolean> {
    const userId = content.user_id;
    if (typeof userId !== "string" || userId.length > 255) return false;
    const parsed = parseUserId(userId);
    if (!parsed.ok || parsed.value.serverName !== origin) {
      this.log(`federation: ${origin} sent a signing-key update for ${userId}; dropped`);
      return false;
    }
    const update: SigningKeyUpdate = { userId };
    const master = checkedCrossSigningKey(content.master_key, userId, "master");
    if (master !== undefined) update.masterKey = master;
    const selfSigning = checkedCrossSigningKey(content.self_signing_key, userId, "self_signing");
    if (selfSigning !== undefined) update.selfSigningKey = selfSigning;
    return await this.cache.applySigningKeys(update);
  }
}
