// Typed errors of the domain. The HTTP layer maps them to Flight Control `Status` bodies in one place
// (functions/commons/http/api-handler.ts); workflow handlers let them propagate.

export abstract class ApiError extends Error {
  abstract readonly code: number;
  abstract readonly reason: string;
}

/** 400: the request is malformed; `field` names the offending field (e.g. `spec.source.imageTag`). */
export class InvalidError extends ApiError {
  readonly code = 400;
  readonly reason = 'BadRequest';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(field ? `${field}: ${detail}` : detail);
  }
}

export class UnauthorizedError extends ApiError {
  readonly code = 401;
  readonly reason = 'Unauthorized';
}

export class ForbiddenError extends ApiError {
  readonly code = 403;
  readonly reason = 'Forbidden';
}

export class NotFoundError extends ApiError {
  readonly code = 404;
  readonly reason = 'NotFound';
  constructor(kind: string, name: string) {
    super(`${kind} "${name}" not found`);
  }
}

export class MethodNotAllowedError extends ApiError {
  readonly code = 405;
  readonly reason = 'MethodNotAllowed';
}

export class ConflictError extends ApiError {
  readonly code = 409;
  readonly reason: string;
  constructor(message: string, reason: 'AlreadyExists' | 'Conflict' = 'Conflict') {
    super(message);
    this.reason = reason;
  }
}

export class PayloadTooLargeError extends ApiError {
  readonly code = 413;
  readonly reason = 'RequestEntityTooLarge';
}

export class UnsupportedMediaTypeError extends ApiError {
  readonly code = 415;
  readonly reason = 'UnsupportedMediaType';
}

export class QuotaExceededError extends ApiError {
  readonly code = 429;
  readonly reason = 'TooManyRequests';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/**
 * A repository's secret reference that names another org's secret (the table is not trusted to keep
 * tenants apart): the run fails, nothing is read. Not an API error: no request carries a reference.
 */
export class SecretOutsideOrgError extends Error {
  override name = 'SecretOutsideOrg';
  constructor() {
    super("the repository's secret reference is outside its org: refused");
  }
}
