// Early binding against a local HTTPS server speaking Flight Control's CSR API subset, signing with a
// real CA created in the test: the issued certificate must chain to it and match the generated key.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  createKeyAndCsr,
  csrName,
  FlightctlEnrollmentCertificates,
  type FlightctlEnrollmentSettings,
} from '../../functions/commons/adapters/flightctl-enrollment.js';
import { generateBuildContext } from '../../functions/commons/domain/containerfile/index.js';
import { EnrollmentError } from '../../functions/commons/domain/enrollment/index.js';
import { input, minimalSpec } from '../fixtures/build-specs.js';
import { type CsrServer, type CsrServerOptions, startCsrServer } from '../fixtures/flightctl-csr-server.js';

const TOKEN = 'test-token-7f3a';
let server: CsrServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

function recordingLogger() {
  const lines: string[] = [];
  return {
    lines,
    info: (message: string, fields?: Record<string, unknown>) =>
      lines.push(`${message} ${JSON.stringify(fields)}`),
    error: (message: string, fields?: Record<string, unknown>) =>
      lines.push(`${message} ${JSON.stringify(fields)}`),
  };
}

async function setup(
  options: Partial<CsrServerOptions> = {},
  settings: Partial<FlightctlEnrollmentSettings> = {},
) {
  server = await startCsrServer({ token: TOKEN, approval: 'allow', ...options });
  const logger = recordingLogger();
  const adapter = new FlightctlEnrollmentCertificates({
    apiUrl: server.url,
    token: TOKEN,
    caPem: server.ca.pem,
    pollIntervalMs: 20,
    timeoutMs: 3000,
    logger,
    ...settings,
  });
  return { server, adapter, logger };
}

describe('PKCS#10 request', () => {
  it('is a valid, self-signed P-256 CSR with the requested subject (checked by an independent parser)', async () => {
    const { csrPem, keyPem, spkiDer } = createKeyAndCsr('imagebuild-abc-0123');
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe('CN=imagebuild-abc-0123');
    expect(Buffer.from(csr.publicKey.rawData).equals(spkiDer)).toBe(true);
    expect(createPrivateKey(keyPem).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('names requests after the build, as a DNS subdomain, fresh per attempt', () => {
    const a = csrName('6F1C_uid/with:odd chars');
    expect(a).toMatch(/^imagebuild-6f1c-uid-with-odd-chars-[0-9a-f]{8}$/);
    expect(csrName('x')).not.toBe(csrName('x'));
  });
});

describe('FlightctlEnrollmentCertificates', () => {
  it('creates, approves and waits for the certificate, which chains to the CA and matches the key', async () => {
    const { server, adapter, logger } = await setup({ issueDelayMs: 100 });
    const config = await adapter.issue('build-uid-1');

    const cert = new X509Certificate(config.clientCertificatePem);
    const ca = new X509Certificate(server.ca.pem);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(config.clientKeyPem))).toBe(true);
    expect(cert.subject).toMatch(/^CN=imagebuild-build-uid-1-[0-9a-f]{8}$/);
    expect(config.server).toBe('https://agent-api.flightctl.test:7443');
    expect(config.certificateAuthorityPem).toBe(server.ca.pem);
    expect(config.enrollmentUiEndpoint).toBe('https://ui.flightctl.test');

    const [create, approve] = server.requests;
    expect(create?.method).toBe('POST');
    expect(create?.path).toBe('/api/v1/certificatesigningrequests');
    expect(create?.body).toMatchObject({
      apiVersion: 'v1beta1',
      kind: 'CertificateSigningRequest',
      spec: {
        signerName: 'flightctl.io/enrollment',
        usages: ['clientAuth', 'CA:false'],
        expirationSeconds: 31536000,
      },
    });
    expect(approve?.method).toBe('PUT');
    expect(approve?.path).toMatch(/\/approval$/);
    expect(server.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(
      server.requests.some(
        (r) => r.method === 'GET' && r.path.startsWith('/api/v1/certificatesigningrequests/'),
      ),
    ).toBe(true);

    // Neither the key, the certificate nor the token reaches a log line.
    const logged = logger.lines.join('\n');
    const keyBody = config.clientKeyPem.split('\n')[1] as string;
    const certBody = config.clientCertificatePem.split('\n')[1] as string;
    expect(logged).toContain('enrollment certificate issued');
    for (const secret of [keyBody, certBody, TOKEN, 'PRIVATE KEY', 'BEGIN CERTIFICATE']) {
      expect(logged).not.toContain(secret);
    }
  });

  it('yields the agent config of an early-binding build: a certificate the CA issued, with its key', async () => {
    const { server, adapter } = await setup();
    const enrollment = await adapter.issue('b-early');
    const { files, secretFiles } = generateBuildContext(
      input(minimalSpec({ binding: { type: 'early' } }), { enrollment }),
    );
    expect(secretFiles).toEqual(['ib/agent/config.yaml']);
    const config = parse(files['ib/agent/config.yaml'] as string, { version: '1.1' })['enrollment-service'];
    const decode = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');
    const cert = new X509Certificate(decode(config.authentication['client-certificate-data']));
    expect(cert.checkIssued(new X509Certificate(decode(config.service['certificate-authority-data'])))).toBe(
      true,
    );
    expect(cert.verify(new X509Certificate(server.ca.pem).publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(decode(config.authentication['client-key-data'])))).toBe(
      true,
    );
    expect(config.service.server).toBe('https://agent-api.flightctl.test:7443');
  });

  it('uses the configured enrollment endpoint and CA instead of asking the service', async () => {
    const { server, adapter } = await setup(
      {},
      { enrollmentServer: 'https://agent.example:7443', enrollmentCaPem: '-----BEGIN CERTIFICATE-----\nX\n' },
    );
    const config = await adapter.issue('b2');
    expect(config.server).toBe('https://agent.example:7443');
    expect(config.certificateAuthorityPem).toContain('BEGIN CERTIFICATE');
    expect(server.requests.some((r) => r.path.startsWith('/api/v1/enrollmentconfig'))).toBe(false);
  });

  it('waits for another approver when its credentials may not approve (403 on approval)', async () => {
    const { adapter, server } = await setup({ approval: 'forbid', autoApproveAfterMs: 150 });
    const config = await adapter.issue('b3');
    expect(
      new X509Certificate(config.clientCertificatePem).checkIssued(new X509Certificate(server.ca.pem)),
    ).toBe(true);
  });

  it('does not approve when told not to', async () => {
    const { adapter, server } = await setup({ autoApproveAfterMs: 50 }, { approve: false });
    await adapter.issue('b4');
    expect(server.requests.some((r) => r.method === 'PUT')).toBe(false);
  });

  it('gives up with a typed Timeout error within the bound', async () => {
    const { adapter } = await setup({ neverIssue: true }, { timeoutMs: 400 });
    const started = Date.now();
    const err = await adapter.issue('b5').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EnrollmentError);
    expect((err as EnrollmentError).failure).toBe('Timeout');
    expect((err as EnrollmentError).csrName).toMatch(/^imagebuild-b5-/);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('reports a denied request as Denied', async () => {
    const { adapter } = await setup({ deny: true });
    const err = await adapter.issue('b6').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EnrollmentError);
    expect((err as EnrollmentError).failure).toBe('Denied');
  });

  it('reports a rejected token as Unauthorized, without echoing it', async () => {
    const { adapter } = await setup({}, { token: 'wrong-token' });
    const err = await adapter.issue('b7').catch((e: unknown) => e);
    expect((err as EnrollmentError).failure).toBe('Unauthorized');
    expect((err as Error).message).not.toContain('wrong-token');
  });

  it('refuses a server whose TLS certificate does not chain to the configured CA', async () => {
    const { adapter } = await setup({}, { caPem: undefined });
    const err = await adapter.issue('b8').catch((e: unknown) => e);
    expect((err as EnrollmentError).failure).toBe('Http');
    expect((err as Error).message).toMatch(/certificate/i);
  });
});
