/**
 * Numbers in query strings. Digits only: `z.coerce.number()` would take an empty `limit=` (or
 * one of spaces) as 0, and `1e2` or `0x10` as numbers, none of which a client means.
 */
import { z } from "zod";

/** A whole number of at most nine digits (a count, a page size, a timeout in ms). */
export function wholeNumberQuery(message = "must be a non-negative integer") {
  return z.string().regex(/^\d{1,9}$/, message).transform(Number);
}
