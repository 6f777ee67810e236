// The one place that sets the AWS SDK clients' options: the SDK's standard retry mode (it retries
// throttling, transient and reset-socket errors with backoff, and corrects clock skew), a user agent
// naming the service. Endpoints and credentials come from the SDK's own resolution, so the standard
// variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, the credential provider chain) apply.
export const AWS_CLIENT_OPTIONS = {
  retryMode: 'standard',
  maxAttempts: 5,
  customUserAgent: 'serverless-imagebuilder',
} as const;
