// Early binding for the build workflow in AWS: the Flight Control URL and credentials live in a Secrets
// Manager secret (JSON of FlightctlEnrollmentSettings) named by FLIGHTCTL_SECRET_ARN, read at the first
// early-binding build and never logged. Kept out of the API functions' bundles.
import { AwsJsonClient } from '../commons/adapters/aws-json.js';
import {
  FlightctlEnrollmentCertificates,
  type FlightctlEnrollmentSettings,
} from '../commons/adapters/flightctl-enrollment.js';
import type { EnrollmentCertificates } from '../commons/domain/enrollment/index.js';
import type { Deps } from '../commons/ports.js';

/** The settings are read once; a failed read is not kept, so the next early-binding build reads again. */
export class SecretBackedEnrollment implements EnrollmentCertificates {
  private delegate?: Promise<EnrollmentCertificates>;

  constructor(
    private readonly client: AwsJsonClient,
    private readonly secretId: string,
  ) {}

  async issue(buildUid: string) {
    this.delegate ??= this.client
      .call<{ SecretString?: string }>('GetSecretValue', { SecretId: this.secretId })
      .then(
        (out) =>
          new FlightctlEnrollmentCertificates(
            JSON.parse(out.SecretString ?? '{}') as FlightctlEnrollmentSettings,
          ),
      )
      .catch((err: unknown) => {
        this.delegate = undefined;
        throw err;
      });
    return (await this.delegate).issue(buildUid);
  }
}

export function withEnrollment(deps: Deps): Deps {
  if (deps.enrollment || !process.env.FLIGHTCTL_SECRET_ARN) return deps;
  const client = new AwsJsonClient({ service: 'secretsmanager' });
  return { ...deps, enrollment: new SecretBackedEnrollment(client, process.env.FLIGHTCTL_SECRET_ARN) };
}
