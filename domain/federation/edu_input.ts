/**
 * Inbound EDUs: the ephemeral part of a transaction another server pushed (typing, receipts,
 * presence, device lists, signing keys, to-device messages), handed to the handler registered
 * for its `edu_type`. The transaction receiver calls `receive` after the transaction's PDUs
 * were handled (a receipt may name an event of the same transaction) and before the answer is
 * recorded, so a transaction interrupted mid-way is retried whole; handlers must therefore
 * tolerate seeing an EDU twice (to-device messages carry a `message_id`, device-list updates a
 * `stream_id`; typing, receipts and presence are idempotent).
 *
 * EDUs of one type are handled one after another in the order sent (to-device messages and
 * device-list updates are ordered); types run side by side. An EDU of an unknown type, or one
 * whose content is not an object, is dropped (the spec: servers ignore EDUs they do not
 * understand). A handler failing costs only its own EDU: the error is logged and the sender,
 * which cannot retry an EDU alone, is not told.
 */
import { isJsonObject, type JsonObject } from "../protocol/json.ts";

/** Acts on the EDUs of one type. */
export interface EduHandler {
  /**
   * Act on one EDU from `origin` (the authenticated server that sent the transaction). The
   * handler checks that `origin` may speak for what the EDU names (its own users, rooms it is
   * in, the room's server ACL) and drops what it may not.
   */
  handle(origin: string, content: JsonObject): Promise<void>;
}

/** Dispatches a transaction's EDUs by type. */
export class EduDispatcher {
  readonly #handlers = new Map<string, EduHandler>();

  /** Build with an optional logger for failures (tests capture it). */
  constructor(
    private readonly log: (message: string, ...details: unknown[]) => void = console.warn,
  ) {}

  /** Register the handler of `eduType` (one per type; a second registration replaces it). */
  register(eduType: string, handler: EduHandler): this {
    this.#handlers.set(eduType, handler);
    return this;
  }

  /** Whether EDUs of `eduType` are acted on. */
  handles(eduType: string): boolean {
    return this.#handlers.has(eduType);
  }

  /** Handle `edus` from `origin` (see the module comment). Never rejects. */
  async receive(origin: string, edus: readonly unknown[]): Promise<void> {
    const byType = new Map<string, JsonObject[]>();
    for (const edu of edus) {
      if (!isJsonObject(edu) || typeof edu.edu_type !== "string") continue;
      if (!isJsonObject(edu.content) || !this.#handlers.has(edu.edu_type)) continue;
      const list = byType.get(edu.edu_type);
      if (list) list.push(edu.content);
      else byType.set(edu.edu_type, [edu.content]);
    }
    await Promise.all([...byType].map(async ([eduType, contents]) => {
      const handler = this.#handlers.get(eduType)!;
      for (const content of contents) {
        try {
          await handler.handle(origin, content);
        } catch (error) {
          this.log(`federation: handling an ${eduType} EDU from ${origin} failed`, error);
        }
      }
    }));
  }
}
