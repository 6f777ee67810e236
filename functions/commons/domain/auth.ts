// Identity and the role matrix of CONTRACT §3. Claims come from the gateway's JWT authorizer (in AWS)
// or from the local stack's HS256 check; both hand over the same claim map.
import { ForbiddenError, UnauthorizedError } from './errors.js';

export const ROLES = ['viewer', 'installer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export type Action = 'read' | 'write' | 'logs' | 'download';

const PERMISSIONS: Record<Role, readonly Action[]> = {
  viewer: ['read', 'logs'],
  installer: ['read', 'download'],
  operator: ['read', 'write', 'logs', 'download'],
  admin: ['read', 'write', 'logs', 'download'],
};

export interface Principal {
  sub: string;
  orgId: string;
  roles: Role[];
}

const ORG_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/**
 * API Gateway HTTP APIs flatten array claims to strings such as "[viewer operator]"; tokens may also
 * carry JSON arrays, comma lists or Cognito groups. All of them mean the same role set.
 */
export function parseRoles(value: unknown): Role[] {
  let raw: unknown[] = [];
  if (Array.isArray(value)) raw = value;
  else if (typeof value === 'string') {
    const s = value.trim();
    if (s.startsWith('[') && s.includes('"')) {
      try {
        const parsed: unknown = JSON.parse(s);
        if (Array.isArray(parsed)) raw = parsed;
      } catch {
        raw = [];
      }
    } else raw = s.replace(/^\[|\]$/g, '').split(/[\s,]+/);
  }
  return ROLES.filter((role) => raw.includes(role));
}

export function principalFromClaims(claims: Record<string, unknown> | undefined): Principal {
  if (!claims) throw new UnauthorizedError('missing or invalid bearer token');
  const sub = claims.sub;
  const orgId = claims.org_id ?? claims['custom:org_id'];
  if (typeof sub !== 'string' || !sub) throw new UnauthorizedError('token has no "sub" claim');
  if (typeof orgId !== 'string' || !ORG_ID.test(orgId)) {
    throw new ForbiddenError('token has no valid "org_id" claim');
  }
  const roles = [...new Set([...parseRoles(claims.roles), ...parseRoles(claims['cognito:groups'])])];
  return { sub, orgId, roles };
}

export function authorize(principal: Principal, action: Action): void {
  if (!principal.roles.some((role) => PERMISSIONS[role].includes(action))) {
    throw new ForbiddenError(
      `the roles [${principal.roles.join(', ')}] do not allow "${action}" (needs one of ${ROLES.filter((r) =>
        PERMISSIONS[r].includes(action),
      ).join(', ')})`,
    );
  }
}
