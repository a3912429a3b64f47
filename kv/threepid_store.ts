/**
 * Third-party identifiers on Deno KV: validation sessions (with KV expiry), the identifiers of
 * each account with an owner index, and identity-server bindings. Every write that must not
 * race (a token submitted twice, one address claimed by two accounts) is an atomic check.
 */
import { threepidKeys } from "./schema.ts";
import type {
  ThreepidAddOutcome,
  ThreepidBindingRecord,
  ThreepidMedium,
  ThreepidSessionRecord,
  ThreepidStore,
  UserThreepidRecord,
} from "../domain/ports/threepid_store.ts";

/** Sessions stay readable a day past their token's expiry, so a late link says "expired". */
const SESSION_GRACE_MS = 24 * 60 * 60_000;

/** The ThreepidStore port over one KV database. */
export class KvThreepidStore implements ThreepidStore {
  /** `now` is injectable for expiry tests. */
  constructor(private readonly kv: Deno.Kv, private readonly now: () => number = Date.now) {}

  /** See ThreepidStore.getSession. */
  async getSession(sid: string): Promise<ThreepidSessionRecord | null> {
    return (await this.kv.get<ThreepidSessionRecord>(threepidKeys.session(sid))).value;
  }

  /** See ThreepidStore.findPendingSession. */
  async findPendingSession(
    medium: ThreepidMedium,
    clientSecret: string,
    address: string,
  ): Promise<ThreepidSessionRecord | null> {
    const index = await this.kv.get<string>(
      threepidKeys.sessionBySecret(medium, clientSecret, address),
    );
    if (index.value === null) return null;
    const session = await this.getSession(index.value);
    return session && session.validatedAt === undefined ? session : null;
  }

  /** See ThreepidStore.putSession. */
  async putSession(session: ThreepidSessionRecord): Promise<void> {
    const expireIn = this.#expireIn(session);
    await this.kv.atomic()
      .set(threepidKeys.session(session.sid), session, { expireIn })
      .set(
        threepidKeys.sessionBySecret(session.medium, session.clientSecret, session.address),
        session.sid,
        { expireIn },
      )
      .commit();
  }

  /** See ThreepidStore.replaceSession. */
  async replaceSession(
    expected: ThreepidSessionRecord,
    next: ThreepidSessionRecord,
  ): Promise<boolean> {
    const key = threepidKeys.session(expected.sid);
    const entry = await this.kv.get<ThreepidSessionRecord>(key);
    if (entry.value === null || JSON.stringify(entry.value) !== JSON.stringify(expected)) {
      return false;
    }
    const result = await this.kv.atomic().check(entry)
      .set(key, next, { expireIn: this.#expireIn(next) })
      .commit();
    return result.ok;
  }

  /** See ThreepidStore.listThreepids. */
  async listThreepids(userId: string): Promise<UserThreepidRecord[]> {
    const out: UserThreepidRecord[] = [];
    for await (
      const entry of this.kv.list<UserThreepidRecord>({
        prefix: threepidKeys.userThreepidPrefix(userId),
      })
    ) out.push(entry.value);
    return out;
  }

  /** See ThreepidStore.ownerOf. */
  async ownerOf(medium: string, address: string): Promise<string | null> {
    return (await this.kv.get<string>(threepidKeys.owner(medium, address))).value;
  }

  /** See ThreepidStore.addThreepid. */
  async addThreepid(userId: string, threepid: UserThreepidRecord): Promise<ThreepidAddOutcome> {
    const ownerKey = threepidKeys.owner(threepid.medium, threepid.address);
    for (let attempt = 0; attempt < 5; attempt++) {
      const owner = await this.kv.get<string>(ownerKey);
      if (owner.value === userId) return "already_yours";
      if (owner.value !== null) return "in_use";
      const result = await this.kv.atomic().check(owner)
        .set(ownerKey, userId)
        .set(threepidKeys.userThreepid(userId, threepid.medium, threepid.address), threepid)
        .commit();
      if (result.ok) return "added";
    }
    return "in_use";
  }

  /** See ThreepidStore.removeThreepid. */
  async removeThreepid(userId: string, medium: string, address: string): Promise<boolean> {
    const ownerKey = threepidKeys.owner(medium, address);
    const recordKey = threepidKeys.userThreepid(userId, medium, address);
    for (let attempt = 0; attempt < 5; attempt++) {
      const [owner, record] = await this.kv.getMany<[string, UserThreepidRecord]>([
        ownerKey,
        recordKey,
      ]);
      if (record.value === null && owner.value !== userId) return false;
      const op = this.kv.atomic().check(owner, record).delete(recordKey);
      // The owner index is only ours to drop when it names us.
      if (owner.value === userId) op.delete(ownerKey);
      if ((await op.commit()).ok) return true;
    }
    return false;
  }

  /** See ThreepidStore.addBinding. */
  async addBinding(userId: string, binding: ThreepidBindingRecord): Promise<void> {
    await this.kv.set(
      threepidKeys.binding(userId, binding.medium, binding.address, binding.idServer),
      true,
    );
  }

  /** See ThreepidStore.removeBinding. */
  async removeBinding(userId: string, binding: ThreepidBindingRecord): Promise<void> {
    await this.kv.delete(
      threepidKeys.binding(userId, binding.medium, binding.address, binding.idServer),
    );
  }

  /** See ThreepidStore.bindings. */
  async bindings(
    userId: string,
    threepid?: { medium: string; address: string },
  ): Promise<ThreepidBindingRecord[]> {
    const out: ThreepidBindingRecord[] = [];
    const prefix = threepidKeys.bindingPrefix(userId, threepid?.medium, threepid?.address);
    for await (const entry of this.kv.list({ prefix })) {
      const [, , medium, address, idServer] = entry.key;
      out.push({ medium: String(medium), address: String(address), idServer: String(idServer) });
    }
    return out;
  }

  #expireIn(session: ThreepidSessionRecord): number {
    return Math.max(1, session.expiresAt - this.now() + SESSION_GRACE_MS);
  }
}
