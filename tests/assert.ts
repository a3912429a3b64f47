/** Assertions for tests; JSR's @std/assert is unreachable from our machines, node's is built in. */
import nodeAssert from "node:assert/strict";

/** Fail unless `condition` is truthy. */
export function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message);
}

/** Fail unless `actual` deeply and strictly equals `expected`. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Fail unless `fn` throws (or rejects) with an error whose message matches `pattern`. */
export async function assertRejects(
  fn: () => unknown,
  pattern?: RegExp,
): Promise<void> {
  try {
    await fn();
  } catch (error) {
    if (pattern) nodeAssert.match(String((error as Error)?.message ?? error), pattern);
    return;
  }
  nodeAssert.fail("expected an error");
}
