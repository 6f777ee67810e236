// SecretStore on AWS Secrets Manager. Repository passwords are secrets named
// "<prefix>/<org>/repositories/<name>/<random>": a fresh name per write, so a lost create race or a
// failed replace removes only its own secret. The role may touch only "<prefix>/*".
import { randomBytes } from 'node:crypto';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  GetSecretValueCommand,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { SecretStore } from '../ports.js';

export class SecretsManagerSecretStore implements SecretStore {
  private signingKey?: Promise<Uint8Array>;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly prefix: string,
    private readonly tokenKeySecretId: string,
  ) {}

  async putRepositoryPassword(orgId: string, repository: string, password: string): Promise<string> {
    const name = `${this.prefix}/${orgId}/repositories/${repository}/${randomBytes(6).toString('hex')}`;
    const out = await this.client.send(
      new CreateSecretCommand({
        Name: name,
        SecretString: password,
        Tags: [
          { Key: 'imagebuilder:org', Value: orgId },
          { Key: 'imagebuilder:repository', Value: repository },
        ],
      }),
    );
    return out.ARN ?? name;
  }

  async deleteSecret(ref: string): Promise<void> {
    try {
      await this.client.send(new DeleteSecretCommand({ SecretId: ref, ForceDeleteWithoutRecovery: true }));
    } catch (err) {
      if (!(err instanceof ResourceNotFoundException)) throw err;
    }
  }

  tokenSigningKey(): Promise<Uint8Array> {
    this.signingKey ??= this.client
      .send(new GetSecretValueCommand({ SecretId: this.tokenKeySecretId }))
      .then((out) => Buffer.from(out.SecretString ?? '', 'utf8'))
      .catch((err) => {
        this.signingKey = undefined;
        throw err;
      });
    return this.signingKey;
  }
}
