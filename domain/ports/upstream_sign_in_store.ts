/**
 * Storage of upstream sign-in: the flows waiting for the provider's callback (single use,
 * short-lived) and the links from a provider's subject to a local user.
 */

/** A sign-in sent to the provider, keyed by the SHA-256 of its `state`. */
export interface UpstreamFlowRecord {
  /** The provider's ID in paths (`TESSERA_OIDC_ID`); the callback must be that provider's. */
  providerId: string;
  nonce: string;
  codeVerifier: string;
  /** A local path the browser goes to once signed in. */
  next: string;
  /** SHA-256 of the cookie set on the browser that started the flow (RFC 6749 §10.12). */
  bindingHash: string;
  createdAt: number;
  expiresAt: number;
}

/** Which local user a provider's subject signs in as. */
export interface UpstreamLinkRecord {
  issuer: string;
  subject: string;
  userId: string;
  linkedAt: number;
}

/** The KV side of upstream sign-in (kv/upstream_sign_in_store.ts). */
export interface UpstreamSignInStore {
  /** Keep a flow until its `expiresAt`. */
  putFlow(stateHash: string, record: UpstreamFlowRecord): Promise<void>;
  /** Read and delete a flow in one commit (a state is used once); null when absent. */
  takeFlow(stateHash: string): Promise<UpstreamFlowRecord | null>;
  /** The user a subject is linked to, if any. */
  getLink(issuer: string, subject: string): Promise<UpstreamLinkRecord | null>;
  /** Link a subject unless it already is (false then: another request linked it first). */
  createLink(record: UpstreamLinkRecord): Promise<boolean>;
  /**
   * Claim the right to provision the subject's account until `expiresAt`, unless a live claim
   * of another holder exists (false then). One claim at a time across every process, so two
   * first sign-ins of one subject create one account, with the claim's localpart.
   */
  claimProvisioning(issuer: string, subject: string, holder: string, expiresAt: number): Promise<
    boolean
  >;
  /** Drop the holder's claim (a claim of another holder is left alone). */
  releaseProvisioning(issuer: string, subject: string, holder: string): Promise<void>;
}
