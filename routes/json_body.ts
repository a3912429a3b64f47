/**
 * Reading request bodies and query strings at the edge: size limits first, then JSON parsing,
 * then a zod schema. Every failure is a Matrix error with the right status, never a 500.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { MatrixError, tooLarge } from "../domain/errors.ts";

/** Largest request body we read by default; media uploads set their own limit. */
export const MAX_JSON_BODY_BYTES = 1_048_576;

/** Options for `readJsonBody`. */
export interface ReadJsonOptions {
  maxBytes?: number;
  /** Treat an empty body as `{}` (e.g. POST /logout, POST /join). */
  emptyAsObject?: boolean;
}

/** Read, size-check, parse and validate a JSON body. */
export async function readJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  options: ReadJsonOptions = {},
): Promise<z.infer<S>> {
  const maxBytes = options.maxBytes ?? MAX_JSON_BODY_BYTES;
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge(`Request body is over ${maxBytes} bytes`);
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  if (bytes.byteLength > maxBytes) throw tooLarge(`Request body is over ${maxBytes} bytes`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new MatrixError("M_NOT_JSON", 400, "Request body is not UTF-8");
  }
  let data: unknown;
  if (text.trim() === "" && options.emptyAsObject) {
    data = {};
  } else {
    try {
      data = JSON.parse(text);
    } catch {
      throw new MatrixError("M_NOT_JSON", 400, "Request body is not valid JSON");
    }
  }
  return validate(schema, data, "body");
}

/** Validate query parameters (unknown ones are ignored, as the spec's compatibility asks). */
export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  return validate(schema, c.req.query(), "query", "M_INVALID_PARAM");
}

/**
 * Validate `data` against `schema`. A missing required field is M_MISSING_PARAM; anything else is
 * `errcode` (M_BAD_JSON for bodies), with the path of the first problem in the message.
 */
export function validate<S extends z.ZodType>(
  schema: S,
  data: unknown,
  where: string,
  errcode = "M_BAD_JSON",
): z.infer<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue.path.map(String).join(".");
  const missing = issue.code === "invalid_type" && valueAt(data, issue.path) === undefined &&
    issue.path.length > 0;
  const code = missing ? "M_MISSING_PARAM" : errcode;
  const text = missing
    ? `Missing ${where} parameter '${path}'`
    : `Invalid ${where}${path ? ` at '${path}'` : ""}: ${issue.message}`;
  throw new MatrixError(code, 400, text);
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let value = data;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}
