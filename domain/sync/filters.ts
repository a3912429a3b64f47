/**
 * Uploading and reading sync filters. A filter's ID is derived from its canonical JSON, so
 * uploading the same filter twice (every Element start-up does) stores it once, and no counter
 * key is needed. IDs never start with `{`, which is how `/sync?filter=` tells an ID from JSON.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { encodeBase64UrlUnpadded } from "../protocol/base64.ts";
import { MatrixError, notFound } from "../errors.ts";
import { type Filter, filterSchema } from "../protocol/event_filter.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { FilterStore } from "../ports/filter_store.ts";

/** Largest filter accepted, in bytes of canonical JSON (a value must fit one KV entry). */
export const MAX_FILTER_BYTES = 60_000;

/**
 * Filters a user may store. A client uploads one or two, again only when its filter changes
 * (the same filter keeps its ID), so a few per client version; Synapse keeps every filter
 * forever. Past the cap a client can still pass its filter inline to /sync.
 */
export const MAX_FILTERS_PER_USER = 100;

/** Characters of a filter ID: 132 bits of the filter's hash. */
const FILTER_ID_LENGTH = 22;

/** Stores and resolves filters for /user/{userId}/filter and /sync. */
export class FilterService {
  /** Over a filter store. */
  constructor(private readonly store: FilterStore) {}

  /** Validate and store a filter; returns its ID. */
  async create(userId: string, filter: JsonObject): Promise<string> {
    parseFilter(filter, "M_BAD_JSON");
    const json = canonicalJson(filter);
    if (new TextEncoder().encode(json).byteLength > MAX_FILTER_BYTES) {
      throw new MatrixError("M_TOO_LARGE", 413, "Filter is too large");
    }
    const filterId = encodeBase64UrlUnpadded(sha256(new TextEncoder().encode(json))).slice(
      0,
      FILTER_ID_LENGTH,
    );
    if (!(await this.store.put(userId, filterId, filter, MAX_FILTERS_PER_USER))) {
      throw new MatrixError(
        "M_TOO_LARGE",
        413,
        `You have stored ${MAX_FILTERS_PER_USER} filters, the most allowed; reuse one of them ` +
          "or pass the filter inline to /sync",
      );
    }
    return filterId;
  }

  /** A stored filter as uploaded; M_NOT_FOUND when unknown. */
  async get(userId: string, filterId: string): Promise<JsonObject> {
    // IDs we hand out are 22 characters; a longer one names nothing (and a very long one would
    // not fit a KV key, so it is not even looked up).
    if (filterId.length > FILTER_ID_LENGTH) throw notFound("Unknown filter");
    const filter = await this.store.get(userId, filterId);
    if (!filter) throw notFound("Unknown filter");
    return filter;
  }

  /**
   * The filter `/sync?filter=` names: inline JSON when it starts with `{`, else a stored ID.
   * A malformed or unknown filter is 400 M_INVALID_PARAM / 404 M_NOT_FOUND, never a 500.
   */
  async resolve(userId: string, param: string | undefined): Promise<Filter> {
    if (param === undefined || param === "") return {};
    if (param.trimStart().startsWith("{")) {
      let data: unknown;
      try {
        data = JSON.parse(param);
      } catch {
        throw new MatrixError("M_INVALID_PARAM", 400, "filter is not valid JSON");
      }
      return parseFilter(data, "M_INVALID_PARAM");
    }
    return parseFilter(await this.get(userId, param), "M_INVALID_PARAM");
  }
}

/** Validate a Filter against the spec's schema. */
export function parseFilter(data: unknown, errcode: string): Filter {
  const result = filterSchema.safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue.path.map(String).join(".");
  throw new MatrixError(
    errcode,
    400,
    `Invalid filter${path ? ` at '${path}'` : ""}: ${issue.message}`,
  );
}
