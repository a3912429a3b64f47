/**
 * Storage port for cross-signing: each user's master, self-signing and user-signing keys, the
 * signatures uploaded through /keys/signatures/upload, and the signature notices that tell a
 * signer's own syncs whose keys they signed. Writes that change a user's keys carry their
 * device-list update in the same commit (the KV adapter uses kv/device_list_log.ts).
 */
import type { JsonObject } from "../protocol/json.ts";

/** What a cross-signing key is for. */
export type CrossSigningUsage = "master" | "self_signing" | "user_signing";

/** Every usage, in the order responses list them. */
export const CROSS_SIGNING_USAGES: readonly CrossSigningUsage[] = [
  "master",
  "self_signing",
  "user_signing",
];

/** A user's cross-signing keys by usage (absent ones were never uploaded). */
export type CrossSigningKeySet = Partial<Record<CrossSigningUsage, JsonObject>>;

/** A signature uploaded on one of a user's keys. */
export interface UploadedSignature {
  /** Owner of the signed key. */
  targetUserId: string;
  /** The signed key: a device ID, or a cross-signing public key (unpadded base64). */
  targetKeyId: string;
  signerUserId: string;
  /** `ed25519:<device ID or public key>` of the signing key. */
  signerKeyId: string;
  /** Unpadded base64 Ed25519 signature. */
  signature: string;
}

/** A new set of a user's cross-signing keys, decided by the domain from the current one. */
export interface CrossSigningKeyChange {
  /** Keys written, by usage. */
  put: CrossSigningKeySet;
  /** Usages whose stored key goes (a new master key voids the old signing keys). */
  remove: CrossSigningUsage[];
  /**
   * Uploaded signatures on the owner's keys that are void now: those on `targetKeyIds` (an old
   * master key) and those the owner made with `ownSignerKeyIds` (an old self-signing key).
   */
  staleSignatures: { targetKeyIds: string[]; ownSignerKeyIds: string[] };
  /**
   * Only the user-signing key changes: it signs only for its owner, so no one else's device
   * list changes; the owner's devices get a signature notice naming the owner instead.
   */
  ownerOnly?: boolean;
}

/** A cross-signing key a signature write relies on still being the current one. */
export interface ExpectedCrossSigningKey {
  userId: string;
  usage: CrossSigningUsage;
  /** Its public key; null when the user must still have none of this usage. */
  publicKey: string | null;
}

/** One /keys/signatures/upload commit. */
export interface SignatureWrite {
  signerUserId: string;
  signatures: UploadedSignature[];
  /** Keys the signatures were checked against; the write fails if any has changed. */
  expected: ExpectedCrossSigningKey[];
  /** The signer's devices whose keys gained a signature (device-list update). */
  signerDeviceIds: string[];
  /** True when the signer's master key gained a signature (device-list update). */
  signerCrossSigning: boolean;
  /** Other users whose master keys the signer signed: only the signer's syncs hear of it. */
  noticeTargets: string[];
}

/** Storage of cross-signing keys, uploaded signatures and signature notices. */
export interface CrossSigningStore {
  /** Cross-signing keys of each user (users with none map to an empty set). */
  keysOf(userIds: readonly string[]): Promise<Map<string, CrossSigningKeySet>>;

  /**
   * Replace `userId`'s keys: `plan` sees the current keys (fresh on each retry) and returns the
   * change, or null to write nothing; it may throw to refuse. Commits the change with a
   * cross-signing device-list update; returns the commit versionstamp, or null when nothing
   * was written.
   */
  updateKeys(
    userId: string,
    plan: (current: CrossSigningKeySet) => Promise<CrossSigningKeyChange | null>,
  ): Promise<string | null>;

  /** Uploaded signatures on `userId`'s keys (devices and cross-signing keys). */
  signaturesOn(userId: string): Promise<UploadedSignature[]>;

  /**
   * Uploaded signatures on `userId`'s keys by `signerUserIds`: the owner's on any of their keys
   * (if the owner is named), and other signers' on the master key, whose public key is
   * `masterKey` (null when the user has none; then only the owner's). Other users can only
   * sign the master key, so each costs one short read however many users verified `userId`.
   */
  signaturesBy(
    userId: string,
    signerUserIds: readonly string[],
    masterKey: string | null,
  ): Promise<UploadedSignature[]>;

  /**
   * Store new signatures with their device-list updates and signature notice in one commit.
   * Returns the commit versionstamp, or "stale" (nothing written) when an expected key changed.
   */
  addSignatures(write: SignatureWrite): Promise<string | "stale">;

  /** Users the signer's signature notices name in commits after sync token `since` up to `upTo`. */
  signatureNoticeTargets(signerUserId: string, since: string, upTo: string): Promise<string[]>;

  /** Drop uploaded signatures on, and made by, deleted devices of `userId`. */
  removeDeviceSignatures(userId: string, deviceIds: readonly string[]): Promise<void>;
}
