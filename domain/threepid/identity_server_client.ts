/**
 * Calls to identity servers users name (Identity Service API v2): bind, unbind, hashed lookup,
 * store-invite and key validity. Every request goes through the OutboundHttp port, whose
 * adapter refuses private addresses unless the operator allows them.
 */
import { encodeBase64UrlUnpadded } from "../protocol/base64.ts";
import { MatrixError } from "../errors.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import { OutboundError, type OutboundHttp } from "../ports/outbound_http.ts";
import { type SigningKey, signJson } from "../protocol/signing.ts";

/** Longest identity server name accepted (a host, an optional port, an optional path). */
const MAX_ID_SERVER_LENGTH = 255;

/**
 * Whether `idServer` is a host name or IP literal with an optional port and path, as Synapse's
 * valid_id_server_location accepts; anything else (a scheme, credentials, a query) is refused.
 */
export function isValidIdServer(idServer: string): boolean {
  if (idServer.length === 0 || idServer.length > MAX_ID_SERVER_LENGTH) return false;
  return /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(\/[A-Za-z0-9._~\/-]*)?$/.test(idServer);
}

/** 400 M_INVALID_PARAM unless `idServer` is a valid identity server location. */
export function checkIdServer(idServer: string): string {
  if (!isValidIdServer(idServer)) {
    throw new MatrixError(
      "M_INVALID_PARAM",
      400,
      "id_server must be a valid hostname with optional port and path components",
    );
  }
  return idServer;
}

/** A binding an identity server confirmed. */
export interface BoundThreepid {
  medium: string;
  address: string;
}

/** What store-invite gave back for a third-party invite. */
export interface StoredInvite {
  token: string;
  displayName: string;
  /** Keys that may sign the invite, each with the URL that says whether it is still valid. */
  publicKeys: { public_key: string; key_validity_url: string }[];
  /** The key for clients that read only `public_key`. */
  fallbackPublicKey: { public_key: string; key_validity_url: string };
}

/** The details the identity server records with a third-party invite. */
export interface InviteDetails {
  medium: string;
  address: string;
  room_id: string;
  sender: string;
  room_alias?: string;
  room_avatar_url?: string;
  room_join_rules?: string;
  room_name?: string;
  room_type?: string;
  sender_display_name?: string;
  sender_avatar_url?: string;
}

/** The identity server answered with an error, or not usefully. */
function upstreamError(what: string, status = 502): MatrixError {
  return new MatrixError("M_UNKNOWN", status, `Identity server ${what}`);
}

/** The Identity Service API as a homeserver uses it. */
export class IdentityServerClient {
  /** `serverName` and `signingKey` sign unbind requests (X-Matrix), as the spec asks. */
  constructor(
    private readonly http: OutboundHttp,
    private readonly serverName: string,
    private readonly signingKey: SigningKey,
  ) {}

  /** Ask `idServer` to bind the session's identifier to `mxid`; its errors are proxied. */
  async bind(
    idServer: string,
    idAccessToken: string,
    request: { sid: string; clientSecret: string; mxid: string },
  ): Promise<BoundThreepid> {
    const body = await this.#json(idServer, "/_matrix/identity/v2/3pid/bind", {
      method: "POST",
      accessToken: idAccessToken,
      body: { sid: request.sid, client_secret: request.clientSecret, mxid: request.mxid },
      proxyErrors: true,
    });
    if (typeof body.medium !== "string" || typeof body.address !== "string") {
      throw upstreamError("gave no medium and address for the binding");
    }
    return { medium: body.medium, address: body.address };
  }

  /**
   * Ask `idServer` to remove the binding of `threepid` to `mxid`, signed by this server. True on
   * success; false when the identity server does not support it or knows no such binding (400,
   * 404, 501), as Synapse treats those; throws when the server cannot be reached.
   */
  async unbind(
    idServer: string,
    mxid: string,
    threepid: { medium: string; address: string },
  ): Promise<boolean> {
    const path = "/_matrix/identity/v2/3pid/unbind";
    const content = { mxid, threepid: { medium: threepid.medium, address: threepid.address } };
    const authorization = await this.#xMatrix(idServer, "POST", path, content);
    const response = await this.#send(idServer, path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: authorization },
      body: JSON.stringify(content),
    });
    if (response.status >= 200 && response.status < 300) return true;
    if ([400, 404, 501].includes(response.status)) return false;
    throw upstreamError(`refused the unbind (HTTP ${response.status})`);
  }

  /**
   * The user ID an identifier is bound to on `idServer`, or null: a v2 lookup, hashed with the
   * server's pepper when it offers sha256 (it never sees the address then), plain otherwise.
   */
  async lookup(
    idServer: string,
    idAccessToken: string,
    medium: string,
    address: string,
  ): Promise<string | null> {
    const details = await this.#json(idServer, "/_matrix/identity/v2/hash_details", {
      method: "GET",
      accessToken: idAccessToken,
    });
    const algorithms = Array.isArray(details.algorithms) ? details.algorithms : [];
    const pepper = details.lookup_pepper;
    if (typeof pepper !== "string" || pepper === "") {
      throw upstreamError("gave invalid hash details", 400);
    }
    let algorithm: string;
    let value: string;
    if (algorithms.includes("sha256")) {
      algorithm = "sha256";
      const digest = await crypto.subtle.digest(
        "SHA-256",
        new TextEncoder().encode(`${address} ${medium} ${pepper}`),
      );
      value = encodeBase64UrlUnpadded(new Uint8Array(digest));
    } else if (algorithms.includes("none")) {
      algorithm = "none";
      value = `${address} ${medium}`;
    } else {
      throw upstreamError("supports no lookup algorithm this server knows", 400);
    }
    const result = await this.#json(idServer, "/_matrix/identity/v2/lookup", {
      method: "POST",
      accessToken: idAccessToken,
      body: { addresses: [value], algorithm, pepper },
    });
    const mappings = result.mappings;
    if (!isJsonObject(mappings)) return null;
    const mxid = mappings[value];
    return typeof mxid === "string" ? mxid : null;
  }

  /** Store a third-party invite on `idServer`, which mails the invitee; its errors are proxied. */
  async storeInvite(
    idServer: string,
    idAccessToken: string,
    invite: InviteDetails,
  ): Promise<StoredInvite> {
    const body = await this.#json(idServer, "/_matrix/identity/v2/store-invite", {
      method: "POST",
      accessToken: idAccessToken,
      body: invite as unknown as JsonObject,
      proxyErrors: true,
    });
    const keyValidityUrl = `https://${idServer}/_matrix/identity/v2/pubkey/isvalid`;
    if (typeof body.token !== "string" || body.token === "") {
      throw upstreamError("gave no token for the invite");
    }
    const publicKeys: StoredInvite["publicKeys"] = [];
    if (Array.isArray(body.public_keys)) {
      for (const entry of body.public_keys) {
        if (!isJsonObject(entry) || typeof entry.public_key !== "string") continue;
        publicKeys.push({
          public_key: entry.public_key,
          key_validity_url: typeof entry.key_validity_url === "string"
            ? entry.key_validity_url
            : keyValidityUrl,
        });
      }
    }
    const fallbackPublicKey = typeof body.public_key === "string"
      ? { public_key: body.public_key, key_validity_url: keyValidityUrl }
      : publicKeys[0];
    if (fallbackPublicKey === undefined) throw upstreamError("gave no public key for the invite");
    if (publicKeys.length === 0) publicKeys.push(fallbackPublicKey);
    return {
      token: body.token,
      displayName: typeof body.display_name === "string" ? body.display_name : "",
      publicKeys,
      fallbackPublicKey,
    };
  }

  /**
   * Whether the identity server still vouches for `publicKey` (its `key_validity_url`). Throws
   * 502 when the server cannot be asked: an unchecked key must not admit anyone.
   */
  async isKeyValid(keyValidityUrl: string, publicKey: string): Promise<boolean> {
    let url: URL;
    try {
      url = new URL(keyValidityUrl);
    } catch {
      return false;
    }
    url.searchParams.set("public_key", publicKey);
    let response;
    try {
      response = await this.http.request(url.href, { method: "GET" });
    } catch (error) {
      if (error instanceof OutboundError) {
        throw new MatrixError("M_UNKNOWN", 502, "Third party certificate could not be checked");
      }
      throw error;
    }
    if (response.status !== 200) {
      throw new MatrixError("M_UNKNOWN", 502, "Third party certificate could not be checked");
    }
    const body = parseObject(response.text);
    return body?.valid === true;
  }

  async #json(
    idServer: string,
    path: string,
    options: {
      method: "GET" | "POST";
      accessToken: string;
      body?: JsonObject;
      proxyErrors?: boolean;
    },
  ): Promise<JsonObject> {
    const headers: Record<string, string> = { Authorization: `Bearer ${options.accessToken}` };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await this.#send(idServer, path, {
      method: options.method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const body = parseObject(response.text);
    if (response.status < 200 || response.status >= 300) {
      // A Matrix error from the identity server reaches the client as it was, as the spec's
      // bind asks ("proxy any errors"); other failures are the upstream's.
      if (
        options.proxyErrors && body !== null && typeof body.errcode === "string" &&
        response.status >= 400 && response.status < 500
      ) {
        throw new MatrixError(
          body.errcode,
          response.status,
          typeof body.error === "string" ? body.error : "Identity server error",
        );
      }
      throw upstreamError(`answered HTTP ${response.status}`);
    }
    if (body === null) throw upstreamError("answered with something other than a JSON object");
    return body;
  }

  async #send(
    idServer: string,
    path: string,
    request: { method: "GET" | "POST"; headers: Record<string, string>; body?: string },
  ) {
    try {
      return await this.http.request(`https://${checkIdServer(idServer)}${path}`, request);
    } catch (error) {
      if (!(error instanceof OutboundError)) throw error;
      if (error.failure === "refused") {
        throw new MatrixError("M_FORBIDDEN", 403, "That identity server may not be contacted");
      }
      throw upstreamError("could not be reached");
    }
  }

  /** The X-Matrix Authorization header for a request to `idServer`. */
  async #xMatrix(
    idServer: string,
    method: string,
    uri: string,
    content: JsonObject,
  ): Promise<string> {
    const signed = await signJson(
      { method, uri, origin: this.serverName, destination: idServer, content },
      this.serverName,
      this.signingKey,
    );
    const sig = signed.signatures[this.serverName][this.signingKey.keyId];
    return `X-Matrix origin="${this.serverName}",destination="${idServer}",` +
      `key="${this.signingKey.keyId}",sig="${sig}"`;
  }
}

function parseObject(text: string): JsonObject | null {
  try {
    const value = JSON.parse(text);
    return isJsonObject(value) ? value : null;
  } catch {
    return null;
  }
}
