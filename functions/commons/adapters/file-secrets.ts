// SecretStore for the local stack: one file per secret under $DATA_DIR/secrets, mode 0600, in a 0700
// directory. It stands in for Secrets Manager and keeps the same naming.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { SecretOutsideOrgError } from '../domain/errors.js';
import type { SecretStore } from '../ports.js';

export class FileSecretStore implements SecretStore {
  private signingKey?: Promise<Uint8Array>;

  constructor(private readonly dir: string) {}

  private path(ref: string): string {
    const p = resolve(this.dir, ref);
    if (!p.startsWith(resolve(this.dir) + sep)) throw new Error('secret reference outside the store');
    return p;
  }

  private async write(ref: string, value: string | Uint8Array): Promise<void> {
    const p = this.path(ref);
    await mkdir(join(p, '..'), { recursive: true, mode: 0o700 });
    await writeFile(p, value, { mode: 0o600, flag: 'wx' });
  }

  async putRepositoryPassword(orgId: string, repository: string, password: string): Promise<string> {
    const ref = `${encodeURIComponent(orgId)}/repositories/${repository}/${randomBytes(6).toString('hex')}`;
    await this.write(ref, password);
    return ref;
  }

  /** Read by the local build runner (the cloud's builder reads Secrets Manager). */
  async readSecret(ref: string): Promise<string> {
    return readFile(this.path(ref), 'utf8');
  }

  async getRepositoryPassword(orgId: string, ref: string): Promise<string> {
    if (!ref.startsWith(`${encodeURIComponent(orgId)}/repositories/`)) throw new SecretOutsideOrgError();
    return this.readSecret(ref);
  }

  async deleteSecret(ref: string): Promise<void> {
    await rm(this.path(ref), { force: true });
  }

  tokenSigningKey(): Promise<Uint8Array> {
    this.signingKey ??= (async () => {
      const ref = 'continue-token-key';
      try {
        return await readFile(this.path(ref));
      } catch {
        const key = randomBytes(32);
        await this.write(ref, key).catch(() => undefined);
        return readFile(this.path(ref));
      }
    })();
    return this.signingKey;
  }
}
