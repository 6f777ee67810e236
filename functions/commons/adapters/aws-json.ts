// A lean client for AWS's JSON-protocol services (DynamoDB, Secrets Manager, Step Functions, EventBridge,
// CloudWatch Logs): SigV4 via
// aws4fetch over the runtime's fetch. Why not the AWS SDK: loading @aws-sdk/client-dynamodb alone costs
// ~190 ms at every cold start here (bare node: ~120 ms) and bundling it puts a handler at ~500 KB; this
// client keeps each API bundle small and cold init near bare Node (figures: `npm run bench bundles`).
// The wire calls are the documented service APIs; tests run them against DynamoDB Local.
import { AwsClient } from 'aws4fetch';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsJsonClientOptions {
  /** SigV4 service name and the X-Amz-Target prefix of the API. */
  service: 'dynamodb' | 'secretsmanager' | 'states' | 'events' | 'logs';
  region?: string;
  endpoint?: string;
  credentials?: AwsCredentials;
}

const PROTOCOL: Record<AwsJsonClientOptions['service'], { target: string; contentType: string }> = {
  dynamodb: { target: 'DynamoDB_20120810', contentType: 'application/x-amz-json-1.0' },
  secretsmanager: { target: 'secretsmanager', contentType: 'application/x-amz-json-1.1' },
  states: { target: 'AWSStepFunctions', contentType: 'application/x-amz-json-1.0' },
  events: { target: 'AWSEvents', contentType: 'application/x-amz-json-1.1' },
  logs: { target: 'Logs_20140328', contentType: 'application/x-amz-json-1.1' },
};

/** Throttling answers come as 400s with these types; they are retried like 5xx and 429. */
const RETRYABLE = new Set([
  'ThrottlingException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
]);
const MAX_ATTEMPTS = 6;

export class AwsServiceError extends Error {
  constructor(
    readonly type: string,
    readonly status: number,
    message: string,
    /** DynamoDB TransactionCanceledException: one code per item of the transaction ("None" if it was fine). */
    readonly cancellationReasons: string[] = [],
  ) {
    super(`${type}: ${message}`);
    this.name = type;
  }
}

/** Credentials of the Lambda execution role (the runtime sets these variables). */
function envCredentials(): AwsCredentials {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) throw new Error('AWS credentials are not set in the environment');
  return {
    accessKeyId,
    secretAccessKey,
    ...(process.env.AWS_SESSION_TOKEN ? { sessionToken: process.env.AWS_SESSION_TOKEN } : {}),
  };
}

export class AwsJsonClient {
  private client?: AwsClient;
  private readonly url: string;
  private readonly region: string;

  constructor(private readonly opts: AwsJsonClientOptions) {
    this.region = opts.region ?? process.env.AWS_REGION ?? 'us-east-1';
    const envEndpoint =
      process.env[`AWS_ENDPOINT_URL_${opts.service === 'states' ? 'SFN' : opts.service.toUpperCase()}`];
    this.url = opts.endpoint ?? envEndpoint ?? `https://${opts.service}.${this.region}.amazonaws.com/`;
  }

  private signer(): AwsClient {
    this.client ??= new AwsClient({
      ...(this.opts.credentials ?? envCredentials()),
      service: this.opts.service,
      region: this.region,
      retries: 3,
    });
    return this.client;
  }

  async call<T = Record<string, unknown>>(action: string, input: object): Promise<T> {
    const { target, contentType } = PROTOCOL[this.opts.service];
    for (let attempt = 1; ; attempt++) {
      const res = await this.signer().fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': contentType, 'x-amz-target': `${target}.${action}` },
        body: JSON.stringify(input),
      });
      const text = await res.text();
      if (res.ok) return (text ? JSON.parse(text) : {}) as T;
      let type = `Http${res.status}`;
      let message = text.slice(0, 500);
      let reasons: string[] = [];
      try {
        const err = JSON.parse(text) as {
          __type?: string;
          message?: string;
          Message?: string;
          CancellationReasons?: { Code?: string }[];
        };
        type = err.__type?.split('#').pop() ?? type;
        message = err.message ?? err.Message ?? message;
        reasons = err.CancellationReasons?.map((r) => r.Code ?? 'None') ?? [];
      } catch {
        // not JSON: keep the status and the start of the body
      }
      if (!RETRYABLE.has(type) || attempt >= MAX_ATTEMPTS)
        throw new AwsServiceError(type, res.status, message, reasons);
      await new Promise((r) => setTimeout(r, Math.random() * 50 * 2 ** attempt));
    }
  }
}

export const isAwsError = (err: unknown, type: string): boolean =>
  err instanceof AwsServiceError && err.type === type;
