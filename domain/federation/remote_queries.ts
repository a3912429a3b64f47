/**
 * Questions a local client asks about another server that only that server can answer: a remote
 * user's profile (`query/profile`) and another server's public room list (`publicRooms`). Room
 * aliases are resolved by the remote joiner (`RemoteJoiner.resolveAlias`), which joins need too.
 *
 * Errors follow Synapse: an unreachable server is 502; a 400, 403 or 404 passes through with its
 * own errcode; anything else, or a malformed answer, is 502.
 */
import { MatrixError } from "../errors.ts";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";
import {
  type FederationResponse,
  type FederationTransport,
  FederationUnreachable,
} from "../ports/federation_transport.ts";

/** What the remote queries are built from. */
export interface RemoteQueriesDeps {
  transport: FederationTransport;
}

/** A public room list request, in the federation API's terms. */
export interface RemotePublicRoomsQuery {
  limit?: number;
  since?: string;
  searchTerm?: string;
  roomTypes?: (string | null)[];
  includeAllNetworks?: boolean;
  thirdPartyInstanceId?: string;
}

/** Remote profile and room directory look-ups for local clients. */
export class RemoteQueries {
  constructor(private readonly deps: RemoteQueriesDeps) {}

  /** A remote user's profile, or one field of it (`{field: value}`), as its server answers. */
  async profile(userId: string, server: string, field?: string): Promise<JsonObject> {
    const query = new URLSearchParams({ user_id: userId });
    if (field !== undefined) query.set("field", field);
    return await this.#ask(server, {
      method: "GET",
      path: `/_matrix/federation/v1/query/profile?${query}`,
    }, "profile");
  }

  /**
   * Another server's public room list. A plain listing is a GET; a search or a room-type filter
   * needs the POST form.
   */
  publicRooms(server: string, query: RemotePublicRoomsQuery): Promise<JsonObject> {
    const filtered = query.searchTerm !== undefined || query.roomTypes !== undefined ||
      query.includeAllNetworks !== undefined || query.thirdPartyInstanceId !== undefined;
    if (!filtered) {
      const params = new URLSearchParams();
      if (query.limit !== undefined) params.set("limit", String(query.limit));
      if (query.since !== undefined) params.set("since", query.since);
      const suffix = params.size > 0 ? `?${params}` : "";
      return this.#ask(server, {
        method: "GET",
        path: `/_matrix/federation/v1/publicRooms${suffix}`,
      }, "public room list");
    }
    const body: JsonObject = {};
    if (query.limit !== undefined) body.limit = query.limit;
    if (query.since !== undefined) body.since = query.since;
    const filter: JsonObject = {};
    if (query.searchTerm !== undefined) filter.generic_search_term = query.searchTerm;
    if (query.roomTypes !== undefined) filter.room_types = query.roomTypes;
    if (Object.keys(filter).length > 0) body.filter = filter;
    if (query.includeAllNetworks !== undefined) {
      body.include_all_networks = query.includeAllNetworks;
    }
    if (query.thirdPartyInstanceId !== undefined) {
      body.third_party_instance_id = query.thirdPartyInstanceId;
    }
    return this.#ask(server, {
      method: "POST",
      path: "/_matrix/federation/v1/publicRooms",
      body,
    }, "public room list");
  }

  async #ask(
    server: string,
    request: { method: "GET" | "POST"; path: string; body?: JsonObject },
    what: string,
  ): Promise<JsonObject> {
    let response: FederationResponse;
    try {
      response = await this.deps.transport.request({ destination: server, ...request });
    } catch (error) {
      if (error instanceof FederationUnreachable) {
        throw new MatrixError("M_UNKNOWN", 502, `Failed to fetch the ${what} from ${server}`);
      }
      throw error;
    }
    const body = response.body;
    if (response.status === 200 && isJsonObject(body)) return body;
    // A 401 from there is about our signature, not the client's token: only these pass through.
    if ([400, 403, 404].includes(response.status) && isJsonObject(body)) {
      const errcode = typeof body.errcode === "string" ? body.errcode : "M_UNKNOWN";
      const message = typeof body.error === "string" ? body.error : `${server} refused`;
      throw new MatrixError(errcode, response.status, message);
    }
    throw new MatrixError("M_UNKNOWN", 502, `${server} gave no usable ${what}`);
  }
}
