/**
 * Logging in by third-party identifier: `identifier: {type: "m.id.thirdparty", medium,
 * address}`, or the r0 form with `medium` and `address` beside `password`. The address is
 * canonicalised as it was when added, so `Bob@Example.com` finds `bob@example.com`.
 */
import { badJson } from "../errors.ts";
import { isJsonObject } from "../protocol/json.ts";
import { canonicalAddress } from "./threepid_service.ts";

/** The identifier a login body names by medium and address, or undefined for any other kind. */
export function thirdPartyLoginIdentifier(
  body: Record<string, unknown>,
): { medium: string; address: string } | undefined {
  const identifier = body.identifier;
  if (isJsonObject(identifier) && identifier.type === "m.id.thirdparty") {
    const { medium, address } = identifier;
    if (typeof medium !== "string" || typeof address !== "string") {
      throw badJson("'identifier.medium' and 'identifier.address' must be strings");
    }
    return { medium, address: canonicalAddress(medium, address) };
  }
  if (identifier === undefined && body.user === undefined && body.medium !== undefined) {
    const { medium, address } = body;
    if (typeof medium !== "string" || typeof address !== "string") {
      throw badJson("'medium' and 'address' must be strings");
    }
    return { medium, address: canonicalAddress(medium, address) };
  }
  return undefined;
}
