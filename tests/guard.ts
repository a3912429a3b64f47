/**
 * A test-level guard for a wait that must end on its own (a cross-process wake, a shutdown):
 * rather than hang until the long-poll's own timeout or the runner's, the test fails at once
 * naming what never happened. A guard bounds a hang; it measures nothing, so it sits far above
 * any real answer.
 */

/** A guard of `ms`: resolves as the promise does, or fails naming `what` after `ms`. */
export type Guard = <T>(promise: Promise<T>, what: string) => Promise<T>;

/** A guard failing whatever is still pending after `ms` milliseconds. */
export function guardWithin(ms: number): Guard {
  return async <T>(promise: Promise<T>, what: string): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
    });
    try {
      return await Promise.race([promise, guard]);
    } finally {
      clearTimeout(timer);
    }
  };
}
