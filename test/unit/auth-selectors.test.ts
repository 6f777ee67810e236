import { describe, expect, it } from 'vitest';
import { authorize, parseRoles, principalFromClaims } from '../../functions/commons/domain/auth.js';
import { ForbiddenError, UnauthorizedError } from '../../functions/commons/domain/errors.js';
import { decodeContinue, encodeContinue, parseLimit } from '../../functions/commons/domain/resources.js';
import {
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from '../../functions/commons/domain/selectors.js';

describe('roles', () => {
  it('reads the shapes the gateway and identity providers use', () => {
    expect(parseRoles('[viewer operator]')).toEqual(['viewer', 'operator']);
    expect(parseRoles('["admin","installer"]')).toEqual(['installer', 'admin']);
    expect(parseRoles(['installer', 'bogus'])).toEqual(['installer']);
    expect(parseRoles('viewer,operator')).toEqual(['viewer', 'operator']);
    expect(parseRoles(undefined)).toEqual([]);
    expect(parseRoles('[superadmin]')).toEqual([]);
  });

  it('takes the org from org_id or Cognito’s custom:org_id and roles from cognito:groups', () => {
    expect(principalFromClaims({ sub: 's', 'custom:org_id': 'o1', 'cognito:groups': '[operator]' })).toEqual({
      sub: 's',
      orgId: 'o1',
      roles: ['operator'],
    });
    expect(() => principalFromClaims(undefined)).toThrow(UnauthorizedError);
    expect(() => principalFromClaims({ sub: 's', org_id: 'a#b' })).toThrow(ForbiddenError);
  });

  it.each([
    ['viewer', { read: true, logs: true, write: false, download: false }],
    ['installer', { read: true, logs: false, write: false, download: true }],
    ['operator', { read: true, logs: true, write: true, download: true }],
    ['admin', { read: true, logs: true, write: true, download: true }],
  ] as const)('%s has exactly its permissions', (role, perms) => {
    const p = { sub: 's', orgId: 'o', roles: [role] };
    for (const [action, allowed] of Object.entries(perms)) {
      const attempt = () => authorize(p, action as 'read');
      if (allowed) expect(attempt).not.toThrow();
      else expect(attempt).toThrow(ForbiddenError);
    }
  });
});

describe('selectors', () => {
  it('parses set-based requirements with commas inside parentheses', () => {
    const reqs = parseLabelSelector('env in (prod, staging),tier!=gold,!legacy,app');
    expect(reqs).toEqual([
      { key: 'env', op: 'in', values: ['prod', 'staging'] },
      { key: 'tier', op: 'neq', value: 'gold' },
      { key: 'legacy', op: 'notexists' },
      { key: 'app', op: 'exists' },
    ]);
    expect(matchesLabels({ env: 'prod', app: 'x' }, reqs)).toBe(true);
    expect(matchesLabels({ env: 'prod', app: 'x', legacy: '' }, reqs)).toBe(false);
    expect(matchesLabels({ env: 'dev', app: 'x' }, reqs)).toBe(false);
  });

  it('rejects malformed selectors and unknown field keys', () => {
    for (const bad of ['a b', 'a=b c', 'k in (a', '=v', ','])
      expect(() => parseLabelSelector(bad)).toThrow(/labelSelector/);
    expect(() => parseFieldSelector('ImageBuild', 'spec.format=qcow2')).toThrow(/unknown field/);
    expect(parseFieldSelector('ImageExport', 'spec.format!=iso')).toEqual([
      { field: 'spec.format', op: 'neq', value: 'iso' },
    ]);
  });

  it('limits', () => {
    expect(parseLimit(undefined)).toBe(100);
    expect(parseLimit('0')).toBe(100);
    expect(parseLimit('1000')).toBe(1000);
    expect(() => parseLimit('1001')).toThrow(/^limit/);
  });

  it('continue tokens round-trip and reject another key', () => {
    const key = Buffer.from('k1');
    const bind = { o: 'org', k: 'ImageBuild' as const, s: 'sel' };
    const t = encodeContinue(key, { ...bind, a: 'name-1' });
    expect(decodeContinue(key, t, bind)).toBe('name-1');
    expect(() => decodeContinue(Buffer.from('k2'), t, bind)).toThrow(/continue/);
  });
});
