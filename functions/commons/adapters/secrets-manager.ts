// SecretStore on AWS Secrets Manager. Repository passwords are secrets named
// "<prefix>/<org>/repositories/<name>/<random>": a fresh name per write, so a lost create race or a
// failed replace removes only its own secret. The role may touch only "<prefix>/*".
import { randomBytes } from 'node:crypto';
import { SecretOutsideOrgError } from '../domain/errors.js';
import { secretNameSegment } from '../domain/names.js';
import type { SecretStore } from '../ports.js';
import { type AwsJsonClient, isAwsError } from './aws-json.js';

export class SecretsManagerSecretStore implements SecretStore {
  private signingKey?: Promise<Uint8Array>;

  constructor(
    private readonly client: AwsJsonClient,
    private readonly prefix: string,
    private readonly tokenKeySecretId: string,
  ) {}

  async putRepositoryPassword(orgId: string, repository: string, password: string): Promise<string> {
    // The org and repository as Secrets Manager allows them; a 128-bit random suffix per write.
    const name = `${this.prefix}/${secretNameSegment(orgId)}/repositories/${secretNameSegment(repository)}/${randomBytes(16).toString('hex')}`;
    const out = await this.client.call<{ ARN?: string }>('CreateSecret', {
      Name: name,
      SecretString: password,
      Tags: [
        { Key: 'imagebuilder:org', Value: orgId },
        { Key: 'imagebuilder:repository', Value: repository },
      ],
    });
    return out.ARN ?? name;
  }

  async deleteSecret(ref: string): Promise<void> {
    try {
      await this.client.call('DeleteSecret', { SecretId: ref, ForceDeleteWithoutRecovery: true });
    } catch (err) {
      if (!isAwsError(err, 'ResourceNotFoundException')) throw err;
    }
  }

  async getRepositoryPassword(orgId: string, ref: string): Promise<string> {
    // A name, or an ARN whose resource part is the name plus Secrets Manager's 6-character suffix.
    const own = `${this.prefix}/${secretNameSegment(orgId)}/repositories/`;
    const at = ref.startsWith('arn:') ? ref.indexOf(':secret:') : -1;
    if (ref.startsWith('arn:') && at < 0) throw new SecretOutsideOrgError();
    const name = at >= 0 ? ref.slice(at + ':secret:'.length) : ref;
    if (!name.startsWith(own)) throw new SecretOutsideOrgError();
    const out = await this.client.call<{ SecretString?: string }>('GetSecretValue', { SecretId: ref });
    return out.SecretString ?? '';
  }

  tokenSigningKey(): Promise<Uint8Array> {
    this.signingKey ??= this.client
      .call<{ SecretString?: string }>('GetSecretValue', { SecretId: this.tokenKeySecretId })
      .then((out) => {
        if (!out.SecretString) throw new Error('the continue-token key secret is empty');
        return Buffer.from(out.SecretString, 'utf8');
      })
      .catch((err) => {
        this.signingKey = undefined;
        throw err;
      });
    return this.signingKey;
  }
}
