// Per-org build quotas (CONTRACT §3): builds created per sliding window and builds active at once.
// Enforced race-free by a ledger (one conditional item per org in the store): a create takes its slot
// and stores the build in one transaction (both or neither); a build that ends gives back its active
// slot. Concurrent creates serialize on the ledger's version, so they can never exceed a limit.
// A slot can outlive its build only if a process dies between two writes (after recording the end and
// before giving the slot back, or between a retry's slot and its write). A build is at most
// two builder jobs one after the other (the architectures in parallel, then the manifest list), each
// bounded by the build timeout plus CodeBuild's 8-hour queue limit; a slot older than that plus an hour
// is such a leftover: it is not counted and is dropped at the next write, so a crash never costs an org
// a slot for good.
import type { Deps, StoredResource } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import { QuotaExceededError } from './errors.js';

export interface QuotaLimits {
  activeBuilds: number;
  buildsPerWindow: number;
  windowSeconds: number;
}

export const DEFAULT_QUOTA: QuotaLimits = {
  activeBuilds: 10,
  buildsPerWindow: 100,
  windowSeconds: 14 * 24 * 3600,
};

/** The ledger's state: creation times (epoch s) within the window, and active builds by uid. */
export interface QuotaLedgerState {
  recent: number[];
  active: Record<string, number>;
}

export type QuotaDecision = { ok: true; next: QuotaLedgerState } | { ok: false; error: QuotaExceededError };

/** Slots taken at most this long ago are live; older ones are leftovers (see the top of this file). */
export function liveSlots(
  active: QuotaLedgerState['active'],
  slotLifetimeSeconds: number,
  nowSeconds: number,
): QuotaLedgerState['active'] {
  return Object.fromEntries(
    Object.entries(active).filter(([, since]) => since > nowSeconds - slotLifetimeSeconds),
  );
}

/** Pure decision: may one more build start now? */
export function decide(
  state: QuotaLedgerState,
  limits: QuotaLimits & { slotLifetimeSeconds: number },
  uid: string,
  nowSeconds: number,
): QuotaDecision {
  const recent = state.recent.filter((t) => t > nowSeconds - limits.windowSeconds).sort((a, b) => a - b);
  const live = liveSlots(state.active, limits.slotLifetimeSeconds, nowSeconds);
  const activeCount = Object.keys(live).length;
  if (activeCount >= limits.activeBuilds) {
    return {
      ok: false,
      error: new QuotaExceededError(
        `quota exceeded: ${activeCount} of ${limits.activeBuilds} active builds allowed for this organization; wait for one to finish or cancel one`,
        60,
      ),
    };
  }
  if (recent.length >= limits.buildsPerWindow) {
    const retryAfter = Math.max(1, Math.ceil((recent[0] as number) + limits.windowSeconds - nowSeconds));
    return {
      ok: false,
      error: new QuotaExceededError(
        `quota exceeded: ${limits.buildsPerWindow} builds per ${Math.round(limits.windowSeconds / 86400)} days for this organization`,
        retryAfter,
      ),
    };
  }
  return {
    ok: true,
    next: { recent: [...recent, nowSeconds], active: { ...live, [uid]: nowSeconds } },
  };
}

export function limitsFor(deps: Deps, orgId: string): QuotaLimits & { slotLifetimeSeconds: number } {
  return {
    ...DEFAULT_QUOTA,
    ...deps.settings.quota,
    ...deps.settings.quotaOverrides?.[orgId],
    slotLifetimeSeconds: 2 * (deps.settings.buildTimeoutSeconds + 8 * 3600) + 3600,
  };
}

/** Takes a slot for build `uid`; with `alsoCreate`, stores that build in the same transaction. */
export async function acquireBuildSlot(
  deps: Deps,
  orgId: string,
  uid: string,
  alsoCreate?: StoredResource,
): Promise<void> {
  const limits = limitsFor(deps, orgId);
  await deps.quotas.update(
    orgId,
    (state) => {
      const d = decide(state, limits, uid, Math.floor(Date.now() / 1000));
      if (!d.ok) throw d.error;
      return d.next;
    },
    alsoCreate,
  );
}

/** A build ended (or its create failed): its active slot is free again. */
export async function releaseBuildSlot(deps: Deps, orgId: string, uid: string, alsoFromWindow = false) {
  await deps.quotas.update(orgId, (state) => {
    if (!(uid in state.active)) return undefined;
    const { [uid]: since, ...active } = state.active;
    const recent = alsoFromWindow ? removeOne(state.recent, since as number) : state.recent;
    return { recent, active };
  });
}

function removeOne(list: number[], value: number): number[] {
  const i = list.indexOf(value);
  return i < 0 ? list : [...list.slice(0, i), ...list.slice(i + 1)];
}

export async function getQuota(deps: Deps, p: Principal) {
  authorize(p, 'read');
  const limits = limitsFor(deps, p.orgId);
  const state = await deps.quotas.read(p.orgId);
  const now = Math.floor(Date.now() / 1000);
  return {
    orgId: p.orgId,
    limits: {
      activeBuilds: limits.activeBuilds,
      buildsPerWindow: limits.buildsPerWindow,
      windowDays: limits.windowSeconds / 86400,
    },
    usage: {
      activeBuilds: Object.keys(liveSlots(state.active, limits.slotLifetimeSeconds, now)).length,
      buildsInWindow: state.recent.filter((t) => t > now - limits.windowSeconds).length,
    },
  };
}
