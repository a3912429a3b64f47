import { assert, assertEquals } from "../assert.ts";
import { DEFAULT_RATE_LIMITS, RateLimiter } from "../../domain/rate_limiter.ts";

// Small buckets for the actions tried here; the defaults for every other action.
const rules = {
  ...DEFAULT_RATE_LIMITS,
  login: { burst: 3, perSecond: 1 },
  register: { burst: 1, perSecond: 0.5 },
  create_room: { burst: 1, perSecond: 1 },
  send: { burst: 2, perSecond: 10 },
  join: { burst: 1, perSecond: 1 },
  key_claim: { burst: 1, perSecond: 1 },
  to_device: { burst: 1, perSecond: 1 },
};

Deno.test("rate limiter: burst, refusal with retry time, refill, keys and actions apart", async () => {
  let now = 0;
  const limiter = new RateLimiter(rules, () => now);
  for (let i = 0; i < 3; i++) assertEquals(await limiter.take("login", "a"), { allowed: true });
  const refused = await limiter.take("login", "a");
  assert(!refused.allowed);
  assertEquals(refused.retryAfterMs, 1000);
  // Another key and another action have their own buckets.
  assertEquals(await limiter.take("login", "b"), { allowed: true });
  assertEquals(await limiter.take("send", "a"), { allowed: true });
  now += 500;
  const half = await limiter.take("login", "a");
  assert(!half.allowed && half.retryAfterMs === 500);
  now += 500;
  assertEquals(await limiter.take("login", "a"), { allowed: true });
  // Refill never exceeds the burst.
  now += 1_000_000;
  for (let i = 0; i < 3; i++) assertEquals(await limiter.take("login", "a"), { allowed: true });
  assert(!(await limiter.take("login", "a")).allowed);
  await limiter.take("register", "x");
  const slow = await limiter.take("register", "x");
  assert(!slow.allowed && slow.retryAfterMs === 2000);
});
