// SecretBackedEnrollment (the AWS build steps' early binding): one failed read of its settings secret
// must not disable early binding for the life of the Lambda sandbox.
import { describe, expect, it } from 'vitest';
import type { AwsJsonClient } from '../../functions/commons/adapters/aws-json.js';
import { SecretBackedEnrollment } from '../../functions/workflows/enrollment.js';

describe('SecretBackedEnrollment', () => {
  it('reads the settings secret again after a failed read, and once after a good one', async () => {
    const calls: string[] = [];
    const answers: (() => Promise<unknown>)[] = [
      () => Promise.reject(new Error('ThrottlingException: Rate exceeded')),
      () => Promise.resolve({ SecretString: JSON.stringify({ apiUrl: 'http://127.0.0.1:1/', token: 't' }) }),
    ];
    const client = {
      call: (action: string, input: { SecretId: string }) => {
        calls.push(`${action} ${input.SecretId}`);
        return (answers.shift() ?? (() => Promise.reject(new Error('asked too often'))))();
      },
    } as unknown as AwsJsonClient;
    const enrollment = new SecretBackedEnrollment(client, 'arn:flightctl');
    await expect(enrollment.issue('uid-1')).rejects.toThrow(/Rate exceeded/);
    // The second build reads the secret again; its settings then fail on their own merits.
    const second = await enrollment.issue('uid-2').then(
      () => 'issued',
      (err: Error) => err.message,
    );
    expect(second).not.toMatch(/Rate exceeded/);
    await enrollment.issue('uid-3').catch(() => undefined);
    expect(calls).toEqual(['GetSecretValue arn:flightctl', 'GetSecretValue arn:flightctl']);
  });
});
