// Early binding: the port through which a build obtains a Flight Control enrollment certificate, and the
// agent enrollment config it yields. The adapter (functions/commons/adapters/flightctl-enrollment.ts)
// speaks Flight Control's CertificateSigningRequest API; nothing here imports an SDK.
//
// The key and certificate are secrets: they go into the build context's agent config only, never into
// the table, logs, events or responses. Errors below never carry them.

/** What the agent needs to enroll: the `enrollment-service` section of /etc/flightctl/config.yaml. */
export interface AgentEnrollmentConfig {
  /** `enrollment-service.service.server`: the agent-facing enrollment endpoint (https URL). */
  server: string;
  /** PEM bundle of the CA(s) the agent trusts for that endpoint. */
  certificateAuthorityPem: string;
  /** PEM of the enrollment (client) certificate issued for this build. */
  clientCertificatePem: string;
  /** PEM (PKCS#8) of the private key generated for this build. */
  clientKeyPem: string;
  /** `enrollment-service.enrollment-ui-endpoint`, when the service advertises one. */
  enrollmentUiEndpoint?: string;
}

export interface EnrollmentCertificates {
  /** Issues an enrollment certificate for a key generated for this build. */
  issue(buildUid: string): Promise<AgentEnrollmentConfig>;
}

export type EnrollmentFailure = 'Timeout' | 'Denied' | 'Failed' | 'Unauthorized' | 'Http' | 'Invalid';

/**
 * Why no certificate could be obtained. `csrName` names the request on the Flight Control side so an
 * operator can look at it; the message never contains key or certificate material.
 */
export class EnrollmentError extends Error {
  constructor(
    readonly failure: EnrollmentFailure,
    message: string,
    readonly csrName?: string,
  ) {
    super(message);
    this.name = 'EnrollmentError';
  }
}
