/**
 * The one error type of the domain: a Matrix errcode, an HTTP status and a message.
 * Routes turn it into `{"errcode": "...", "error": "..."}`; anything else thrown is a 500.
 */
export class MatrixError extends Error {
  /** Build an error with its Matrix errcode, HTTP status and human-readable message. */
  constructor(
    readonly errcode: string,
    readonly status: number,
    message: string,
    /** Extra top-level fields for the response body, such as `retry_after_ms`. */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "MatrixError";
  }

  /** The JSON body a client receives. */
  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

/** 400 M_BAD_JSON: the body parsed but has the wrong shape. */
export const badJson = (message: string) => new MatrixError("M_BAD_JSON", 400, message);
/** 400 M_NOT_JSON: the body is not JSON at all. */
export const notJson = (message = "Body is not valid JSON") =>
  new MatrixError("M_NOT_JSON", 400, message);
/** 400 M_INVALID_PARAM: a parameter has a bad value. */
export const invalidParam = (message: string) => new MatrixError("M_INVALID_PARAM", 400, message);
/** 400 M_MISSING_PARAM: a required parameter is absent. */
export const missingParam = (message: string) => new MatrixError("M_MISSING_PARAM", 400, message);
/** 403 M_FORBIDDEN. */
export const forbidden = (message: string) => new MatrixError("M_FORBIDDEN", 403, message);
/** 404 M_NOT_FOUND. */
export const notFound = (message: string) => new MatrixError("M_NOT_FOUND", 404, message);
/** 404/405 M_UNRECOGNIZED: unknown endpoint or method. */
export const unrecognized = (status: 404 | 405, message = "Unrecognized request") =>
  new MatrixError("M_UNRECOGNIZED", status, message);
/** 413 M_TOO_LARGE. */
export const tooLarge = (message: string) => new MatrixError("M_TOO_LARGE", 413, message);
/** 400 M_UNSUPPORTED_ROOM_VERSION. */
export const unsupportedRoomVersion = (version: string) =>
  new MatrixError("M_UNSUPPORTED_ROOM_VERSION", 400, `Room version ${version} is not supported`);
