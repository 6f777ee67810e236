import { describe, expect, it } from 'vitest';
import { decide, liveSlots } from '../../functions/commons/domain/quotas.js';

const limits = { activeBuilds: 2, buildsPerWindow: 3, windowSeconds: 1000, slotLifetimeSeconds: 500 };
const now = 10_000;

describe('quota decision', () => {
  it('takes a slot and records the creation while both limits allow', () => {
    const d = decide({ recent: [now - 10], active: { a: now - 10 } }, limits, 'b', now);
    expect(d).toEqual({ ok: true, next: { recent: [now - 10, now], active: { a: now - 10, b: now } } });
  });

  it('refuses at the active limit, and at the window limit with Retry-After to the oldest creation’s expiry', () => {
    const full = decide({ recent: [], active: { a: now - 1, b: now - 2 } }, limits, 'c', now);
    expect(full.ok).toBe(false);
    expect(!full.ok && full.error.message).toMatch(/2 of 2 active builds/);
    const busy = decide({ recent: [now - 900, now - 50, now - 10], active: {} }, limits, 'c', now);
    expect(busy.ok).toBe(false);
    expect(!busy.ok && busy.error.retryAfterSeconds).toBe(100);
  });

  it('does not count a slot older than the build timeout allows (a crash left it), and drops it', () => {
    const state = { recent: [], active: { leftover: now - 501, running: now - 499 } };
    expect(liveSlots(state.active, 500, now)).toEqual({ running: now - 499 });
    const d = decide(state, limits, 'new', now);
    expect(d).toEqual({ ok: true, next: { recent: [now], active: { running: now - 499, new: now } } });
  });
});
