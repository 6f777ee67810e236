// Early binding adapter: obtains an enrollment certificate from a Flight Control service through its
// CertificateSigningRequest API (the subset the `flightctl certificate request` command uses):
//   POST /api/v1/certificatesigningrequests                 create, signer flightctl.io/enrollment
//   PUT  /api/v1/certificatesigningrequests/{name}/approval approve, when the credentials allow it
//   GET  /api/v1/certificatesigningrequests/{name}          poll until status.certificate is set
//   GET  /api/v1/enrollmentconfig?csr={name}                enrollment endpoint and CA, unless configured
// A fresh ECDSA P-256 key is generated per build and its PKCS#10 request is encoded here with
// node:crypto (a few DER structures; no certificate library at run time).
//
// HTTP goes through node:https rather than the global fetch because a per-service CA bundle needs TLS
// options that fetch only takes through undici's Agent, which is not a dependency.
//
// Secrets: the key, the certificate and the bearer token never reach a log line or an error message.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import {
  type AgentEnrollmentConfig,
  type EnrollmentCertificates,
  EnrollmentError,
} from '../domain/enrollment/index.js';
import type { Logger } from '../ports.js';

export interface FlightctlEnrollmentSettings {
  /** Base URL of the Flight Control API, e.g. `https://api.flightctl.example.com`. */
  apiUrl: string;
  /** Bearer token of an identity allowed to create (and, ideally, approve) CSRs. */
  token: string;
  /** PEM CA bundle the API's TLS certificate chains to, when not a public CA. */
  caPem?: string;
  /** Skip TLS verification of the API (test deployments only). */
  insecureSkipVerify?: boolean;
  /** Agent-facing enrollment endpoint; with `enrollmentCaPem`, skips the enrollmentconfig lookup. */
  enrollmentServer?: string;
  enrollmentCaPem?: string;
  /** Approve the request with these credentials (default true); a 403 then just means "wait". */
  approve?: boolean;
  /** Lifetime asked of the enrollment certificate (default 365 days: images are deployed later). */
  expirationSeconds?: number;
  /** Bound on the whole issuance, creation to certificate (default 60 s). */
  timeoutMs?: number;
  /** Pause between polls (default 1 s). */
  pollIntervalMs?: number;
  logger?: Logger;
}

const CSR_PATH = '/api/v1/certificatesigningrequests';
const ENROLLMENT_SIGNER = 'flightctl.io/enrollment';

interface CsrResource {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; resourceVersion?: string; [k: string]: unknown };
  spec: Record<string, unknown>;
  status?: {
    certificate?: string;
    conditions?: Array<{
      type: string;
      status: string;
      reason?: string;
      message?: string;
      lastTransitionTime?: string;
    }>;
  };
}

// ---- DER, just enough for a PKCS#10 request ----------------------------------------------------

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const tlv = (tag: number, ...content: Buffer[]): Buffer => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
};

function derOid(oid: string): Buffer {
  const [a, b, ...rest] = oid.split('.').map(Number) as [number, number, ...number[]];
  const bytes = [40 * a + b];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

const OID_COMMON_NAME = '2.5.4.3';
const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** A fresh P-256 key and a PKCS#10 request for it with subject CN=<commonName>, signed ECDSA-SHA256. */
export function createKeyAndCsr(commonName: string): { keyPem: string; csrPem: string; spkiDer: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' });
  const subject = tlv(
    0x30,
    tlv(0x31, tlv(0x30, derOid(OID_COMMON_NAME), tlv(0x0c, Buffer.from(commonName, 'utf8')))),
  );
  const info = tlv(0x30, tlv(0x02, Buffer.from([0])), subject, spkiDer, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  const csr = tlv(
    0x30,
    info,
    tlv(0x30, derOid(OID_ECDSA_WITH_SHA256)),
    tlv(0x03, Buffer.from([0]), signature),
  );
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    csrPem: pem('CERTIFICATE REQUEST', csr),
    spkiDer,
  };
}

// ---- HTTP ----------------------------------------------------------------------------------------

interface HttpResult {
  status: number;
  body: string;
}

type JsonResult<T> = { ok: true; status: number; value: T } | { ok: false; status: number; message: string };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class FlightctlEnrollmentCertificates implements EnrollmentCertificates {
  private readonly base: URL;

  constructor(private readonly settings: FlightctlEnrollmentSettings) {
    this.base = new URL(settings.apiUrl);
    if (this.base.protocol !== 'https:' && this.base.protocol !== 'http:') {
      throw new Error('Flight Control apiUrl must be an http(s) URL');
    }
  }

  private call(method: string, path: string, body: unknown, deadline: number): Promise<HttpResult> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const timeout = Math.max(1, deadline - Date.now());
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          timeout,
          headers: {
            accept: 'application/json',
            authorization: `Bearer ${this.settings.token}`,
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
          ...(url.protocol === 'https:'
            ? { ca: this.settings.caPem, rejectUnauthorized: !this.settings.insecureSkipVerify }
            : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`request timed out after ${timeout} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** One request; transport failures and non-2xx statuses become EnrollmentError without any secret. */
  private async json<T>(
    method: string,
    path: string,
    body: unknown,
    deadline: number,
    csrName: string,
  ): Promise<JsonResult<T>> {
    let res: HttpResult;
    try {
      res = await this.call(method, path, body, deadline);
    } catch (err) {
      if (Date.now() >= deadline) {
        throw new EnrollmentError(
          'Timeout',
          `no enrollment certificate within the time allowed (${method} ${path})`,
          csrName,
        );
      }
      throw new EnrollmentError('Http', `${method} ${path}: ${(err as Error).message}`, csrName);
    }
    if (res.status >= 200 && res.status < 300) {
      try {
        return { ok: true, status: res.status, value: JSON.parse(res.body) as T };
      } catch {
        throw new EnrollmentError('Http', `${method} ${path}: the response is not JSON`, csrName);
      }
    }
    // A Status body's message helps an operator; it never holds key or certificate material.
    const message = statusMessage(res.body);
    if (res.status === 401)
      throw new EnrollmentError('Unauthorized', `${method} ${path}: 401 ${message}`, csrName);
    return { ok: false, status: res.status, message };
  }

  async issue(buildUid: string): Promise<AgentEnrollmentConfig> {
    const timeoutMs = this.settings.timeoutMs ?? 60_000;
    const pollMs = this.settings.pollIntervalMs ?? 1000;
    const deadline = Date.now() + timeoutMs;
    const log = this.settings.logger;
    const name = csrName(buildUid);
    const { keyPem, csrPem, spkiDer } = createKeyAndCsr(name);

    const created = await this.json<CsrResource>(
      'POST',
      CSR_PATH,
      {
        apiVersion: 'v1beta1',
        kind: 'CertificateSigningRequest',
        metadata: { name },
        spec: {
          request: Buffer.from(csrPem).toString('base64'),
          signerName: ENROLLMENT_SIGNER,
          usages: ['clientAuth', 'CA:false'],
          expirationSeconds: this.settings.expirationSeconds ?? 365 * 24 * 3600,
        },
      },
      deadline,
      name,
    );
    if (!created.ok) {
      const failure = created.status === 403 ? 'Unauthorized' : created.status === 400 ? 'Invalid' : 'Http';
      throw new EnrollmentError(failure, `creating CSR ${name}: ${created.status} ${created.message}`, name);
    }
    log?.info('enrollment CSR created', { csr: name });
    let csr = created.value;

    if (!csr.status?.certificate && this.settings.approve !== false && !conditionTrue(csr, 'Approved')) {
      const approved = await this.json<CsrResource>(
        'PUT',
        `${CSR_PATH}/${encodeURIComponent(name)}/approval`,
        withApproval(csr),
        deadline,
        name,
      );
      if (approved.ok) {
        csr = approved.value;
        log?.info('enrollment CSR approved', { csr: name });
      } else if (approved.status === 403) {
        log?.info('not allowed to approve the enrollment CSR; waiting for its approval', { csr: name });
      } else {
        throw new EnrollmentError(
          'Http',
          `approving CSR ${name}: ${approved.status} ${approved.message}`,
          name,
        );
      }
    }

    while (!csr.status?.certificate) {
      checkNotRejected(csr, name);
      if (Date.now() + pollMs > deadline) {
        throw new EnrollmentError('Timeout', `CSR ${name} was not issued within ${timeoutMs} ms`, name);
      }
      await sleep(pollMs);
      const polled = await this.json<CsrResource>(
        'GET',
        `${CSR_PATH}/${encodeURIComponent(name)}`,
        undefined,
        deadline,
        name,
      );
      if (!polled.ok) {
        throw new EnrollmentError('Http', `reading CSR ${name}: ${polled.status} ${polled.message}`, name);
      }
      csr = polled.value;
    }
    checkNotRejected(csr, name);

    const certificatePem = Buffer.from(csr.status.certificate, 'base64').toString('utf8');
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certificatePem);
    } catch {
      throw new EnrollmentError('Invalid', `CSR ${name}: the issued certificate does not parse`, name);
    }
    if (!cert.publicKey.export({ type: 'spki', format: 'der' }).equals(spkiDer)) {
      throw new EnrollmentError(
        'Invalid',
        `CSR ${name}: the issued certificate is not for the key generated`,
        name,
      );
    }
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new EnrollmentError('Invalid', `CSR ${name}: certificate and key do not match`, name);
    }

    const endpoint = await this.enrollmentEndpoint(name, deadline);
    log?.info('enrollment certificate issued', { csr: name, notAfter: cert.validTo });
    return {
      server: endpoint.server,
      certificateAuthorityPem: endpoint.caPem,
      clientCertificatePem: certificatePem,
      clientKeyPem: keyPem,
      ...(endpoint.uiEndpoint ? { enrollmentUiEndpoint: endpoint.uiEndpoint } : {}),
    };
  }

  /** The agent-facing endpoint and its CA: from settings, else Flight Control's enrollmentconfig. */
  private async enrollmentEndpoint(name: string, deadline: number) {
    const { enrollmentServer, enrollmentCaPem } = this.settings;
    if (enrollmentServer && enrollmentCaPem) return { server: enrollmentServer, caPem: enrollmentCaPem };
    const res = await this.json<{
      'enrollment-service'?: {
        service?: { server?: string; 'certificate-authority-data'?: string };
        'enrollment-ui-endpoint'?: string;
      };
    }>('GET', `/api/v1/enrollmentconfig?csr=${encodeURIComponent(name)}`, undefined, deadline, name);
    if (!res.ok) {
      throw new EnrollmentError('Http', `reading enrollment config: ${res.status} ${res.message}`, name);
    }
    const svc = res.value['enrollment-service'];
    const server = enrollmentServer ?? svc?.service?.server;
    const caData = svc?.service?.['certificate-authority-data'];
    const caPem = enrollmentCaPem ?? (caData ? Buffer.from(caData, 'base64').toString('utf8') : undefined);
    if (!server || !caPem)
      throw new EnrollmentError('Invalid', 'enrollment config lacks the server or its CA', name);
    return { server, caPem, uiEndpoint: svc?.['enrollment-ui-endpoint'] };
  }
}

/** `imagebuild-<uid>-<random>`: a DNS subdomain, new per attempt (a retry generates a new key). */
export function csrName(buildUid: string): string {
  const uid = buildUid
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 200);
  return `imagebuild-${uid || 'build'}-${randomBytes(4).toString('hex')}`;
}

function conditionTrue(csr: CsrResource, type: string): boolean {
  return (csr.status?.conditions ?? []).some((c) => c.type === type && c.status === 'True');
}

function checkNotRejected(csr: CsrResource, name: string): void {
  for (const type of ['Denied', 'Failed'] as const) {
    const c = (csr.status?.conditions ?? []).find((x) => x.type === type && x.status === 'True');
    if (c) {
      throw new EnrollmentError(
        type,
        `CSR ${name} ${type.toLowerCase()}: ${c.reason ?? ''} ${c.message ?? ''}`.trim(),
        name,
      );
    }
  }
}

function withApproval(csr: CsrResource): CsrResource {
  const conditions = (csr.status?.conditions ?? []).filter((c) => c.type !== 'Approved');
  return {
    ...csr,
    status: {
      ...csr.status,
      conditions: [
        ...conditions,
        {
          type: 'Approved',
          status: 'True',
          reason: 'Approved',
          message: 'Approved by serverless-imagebuilder for an early-binding image build',
          lastTransitionTime: new Date().toISOString(),
        },
      ],
    },
  };
}

function statusMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 300);
  } catch {
    // not JSON
  }
  return body.slice(0, 120).replace(/[^\x20-\x7e]/g, '?');
}
