// Step Functions and Secrets Manager cannot run here, so these adapters are checked against a local
// HTTP endpoint that records the exact signed requests they send and answers as the services document.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AwsJsonClient, AwsServiceError } from '../../functions/commons/adapters/aws-json.js';
import { SecretsManagerSecretStore } from '../../functions/commons/adapters/secrets-manager.js';
import { StepFunctionsWorkflows } from '../../functions/commons/adapters/sfn-workflows.js';

interface Seen {
  target: string;
  contentType: string;
  authorization: string;
  securityToken?: string;
  body: any;
}

let server: Server;
let endpoint: string;
const seen: Seen[] = [];
let answers: { status: number; body: unknown }[] = [];

beforeAll(async () => {
  server = createServer(async (req: IncomingMessage, res) => {
    let raw = '';
    for await (const c of req) raw += c;
    seen.push({
      target: String(req.headers['x-amz-target']),
      contentType: String(req.headers['content-type']),
      authorization: String(req.headers.authorization),
      ...(req.headers['x-amz-security-token']
        ? { securityToken: String(req.headers['x-amz-security-token']) }
        : {}),
      body: JSON.parse(raw),
    });
    const a = answers.shift() ?? { status: 200, body: {} };
    res.writeHead(a.status, { 'content-type': 'application/x-amz-json-1.0' });
    res.end(JSON.stringify(a.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  seen.length = 0;
  answers = [];
});

const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', sessionToken: 'session-token' };
const client = (service: 'states' | 'secretsmanager') =>
  new AwsJsonClient({ service, endpoint, region: 'eu-west-1', credentials: creds });

const ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:image-build';
const ref = {
  orgId: 'o',
  kind: 'ImageBuild' as const,
  name: 'b',
  uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
  generation: 2,
};

describe('StepFunctionsWorkflows', () => {
  it('starts an execution named by uid and generation, signed with SigV4 for states', async () => {
    const wf = new StepFunctionsWorkflows(client('states'), { ImageBuild: ARN, ImageExport: undefined });
    await wf.start(ref);
    expect(seen).toHaveLength(1);
    const [call] = seen as [Seen];
    expect(call.target).toBe('AWSStepFunctions.StartExecution');
    expect(call.contentType).toBe('application/x-amz-json-1.0');
    expect(call.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/states\/aws4_request, SignedHeaders=.*x-amz-target.*, Signature=[0-9a-f]{64}$/,
    );
    expect(call.securityToken).toBe('session-token');
    expect(call.body).toEqual({ stateMachineArn: ARN, name: `${ref.uid}-2`, input: JSON.stringify(ref) });
  });

  it('a repeated start (ExecutionAlreadyExists) is harmless; other errors propagate', async () => {
    const wf = new StepFunctionsWorkflows(client('states'), { ImageBuild: ARN, ImageExport: undefined });
    answers = [
      {
        status: 400,
        body: { __type: 'com.amazonaws.swf.service.v2.model#ExecutionAlreadyExists', message: 'x' },
      },
    ];
    await expect(wf.start(ref)).resolves.toBeUndefined();
    answers = [{ status: 400, body: { __type: 'AccessDeniedException', message: 'denied' } }];
    await expect(wf.start(ref)).rejects.toThrow(AwsServiceError);
    await expect(wf.start({ ...ref, kind: 'ImageExport' })).rejects.toThrow(/no state machine/);
  });

  it('stops the execution by its ARN; a missing execution is not an error', async () => {
    const wf = new StepFunctionsWorkflows(client('states'), { ImageBuild: ARN, ImageExport: undefined });
    answers = [{ status: 400, body: { __type: 'ExecutionDoesNotExist', message: 'gone' } }];
    await wf.stop(ref, 'ImageBuild deleted');
    expect(seen[0]?.target).toBe('AWSStepFunctions.StopExecution');
    expect(seen[0]?.body).toEqual({
      executionArn: `arn:aws:states:eu-west-1:123456789012:execution:image-build:${ref.uid}-2`,
      cause: 'ImageBuild deleted',
    });
  });

  it('retries throttling, then gives up with the service error', async () => {
    const wf = new StepFunctionsWorkflows(client('states'), { ImageBuild: ARN, ImageExport: undefined });
    answers = [
      { status: 400, body: { __type: 'ThrottlingException', message: 'slow down' } },
      { status: 200, body: { executionArn: 'x' } },
    ];
    await wf.start(ref);
    expect(seen).toHaveLength(2);
  });
});

describe('SecretsManagerSecretStore', () => {
  it('creates each password under a fresh name in the service prefix, tagged with org and repository', async () => {
    const store = new SecretsManagerSecretStore(client('secretsmanager'), 'imagebuilder/dev', 'token-arn');
    answers = [
      { status: 200, body: { ARN: 'arn:1' } },
      { status: 200, body: { ARN: 'arn:2' } },
    ];
    expect(await store.putRepositoryPassword('org-1', 'quay', 'pw')).toBe('arn:1');
    await store.putRepositoryPassword('org-1', 'quay', 'pw');
    const [a, b] = seen as [Seen, Seen];
    expect(a.target).toBe('secretsmanager.CreateSecret');
    expect(a.contentType).toBe('application/x-amz-json-1.1');
    expect(a.body.Name).toMatch(/^imagebuilder\/dev\/org-1\/repositories\/quay\/[0-9a-f]{32}$/);
    expect(a.body.Name).not.toBe(b.body.Name);
    expect(a.body.SecretString).toBe('pw');
    expect(a.body.Tags).toEqual([
      { Key: 'imagebuilder:org', Value: 'org-1' },
      { Key: 'imagebuilder:repository', Value: 'quay' },
    ]);
  });

  it('names a secret as Secrets Manager allows, whatever the org id holds (`:`, `%`, spaces, non-ASCII)', async () => {
    const store = new SecretsManagerSecretStore(client('secretsmanager'), 'imagebuilder/dev', 'token-arn');
    const orgs = ['acme:eu/west', 'org%41 x', 'société=1', 'a=3A'];
    answers = orgs.map((_, i) => ({ status: 200, body: { ARN: `arn:${i}` } }));
    for (const org of orgs) await store.putRepositoryPassword(org, 'quay', 'pw');
    const names = seen.map((x) => x.body.Name as string);
    // CreateSecret's documented Name: ASCII letters, numbers and /_+=.@-, at most 512 characters.
    for (const name of names) {
      expect(name).toMatch(/^[A-Za-z0-9/_+=.@-]{1,512}$/);
      expect(name.split('/')).toHaveLength(6); // prefix (2), org, "repositories", repository, random
    }
    // Distinct orgs stay distinct (the encoding is reversible: `a=3A` is not `a:`).
    expect(new Set(names.map((n) => n.split('/')[2])).size).toBe(orgs.length);
    expect(names[0]?.split('/')[2]).toBe('acme=3Aeu=2Fwest');
  });

  it('reads a repository password only through a reference inside the org (name or ARN); another org’s is refused unread', async () => {
    const store = new SecretsManagerSecretStore(client('secretsmanager'), 'imagebuilder/dev', 'token-arn');
    const arn = (name: string) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`;
    answers = [
      { status: 200, body: { SecretString: 'pw-1' } },
      { status: 200, body: { SecretString: 'pw-2' } },
    ];
    expect(await store.getRepositoryPassword('org-1', arn('imagebuilder/dev/org-1/repositories/q/ab'))).toBe(
      'pw-1',
    );
    expect(await store.getRepositoryPassword('org-1', 'imagebuilder/dev/org-1/repositories/q/ab')).toBe(
      'pw-2',
    );
    for (const ref of [
      arn('imagebuilder/dev/org-2/repositories/q/ab'),
      arn('imagebuilder/dev/org-10/repositories/q/ab'),
      'imagebuilder/dev/org-1x/repositories/q/ab',
      arn('imagebuilder/prod/org-1/repositories/q/ab'),
      'arn:aws:secretsmanager:eu-west-1:123456789012:imagebuilder/dev/org-1/repositories/q/ab',
      arn('imagebuilder/dev/org-1/other/q/ab'),
    ]) {
      await expect(store.getRepositoryPassword('org-1', ref), ref).rejects.toThrow(/outside its org/);
    }
    expect(seen.map((x) => x.target)).toEqual([
      'secretsmanager.GetSecretValue',
      'secretsmanager.GetSecretValue',
    ]);
  });

  it('deletes without recovery, tolerates a missing secret, caches the token key', async () => {
    const store = new SecretsManagerSecretStore(client('secretsmanager'), 'p', 'token-arn');
    answers = [{ status: 400, body: { __type: 'ResourceNotFoundException', Message: 'no' } }];
    await store.deleteSecret('arn:1');
    expect(seen[0]?.body).toEqual({ SecretId: 'arn:1', ForceDeleteWithoutRecovery: true });
    answers = [{ status: 200, body: { SecretString: 'k'.repeat(64) } }];
    const k1 = await store.tokenSigningKey();
    const k2 = await store.tokenSigningKey();
    expect(Buffer.from(k1).toString()).toBe('k'.repeat(64));
    expect(k2).toBe(k1);
    expect(seen.filter((s) => s.target === 'secretsmanager.GetSecretValue')).toHaveLength(1);
  });
});
