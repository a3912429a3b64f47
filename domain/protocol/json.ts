/** JSON value types shared by the protocol core. Numbers are integers wherever Matrix signs them. */

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object with string keys. */
export type JsonObject = { [key: string]: JsonValue };

/** True when `value` is a plain JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
