// BuildLogs on CloudWatch Logs: CodeBuild writes each run to the stream "<uid>-<generation>/<arch>" of
// the builders' log group; a read filters those streams by prefix, the cursor is FilterLogEvents' token.

import type { BuildLogs, WorkflowRef } from '../ports.js';
import type { AwsJsonClient } from './aws-json.js';
import { executionName } from './sfn-workflows.js';

export class CloudWatchBuildLogs implements BuildLogs {
  constructor(
    private readonly client: AwsJsonClient,
    private readonly logGroupName: string,
  ) {}

  async read(ref: WorkflowRef, cursor?: string): Promise<{ text: string; cursor: string }> {
    let text = '';
    let token = cursor || undefined;
    for (let page = 0; page < 10; page++) {
      const out = await this.client.call<{ events?: { message: string }[]; nextToken?: string }>(
        'FilterLogEvents',
        {
          logGroupName: this.logGroupName,
          logStreamNamePrefix: `${executionName(ref)}/`,
          ...(token ? { nextToken: token } : {}),
        },
      );
      for (const e of out.events ?? []) text += e.message.endsWith('\n') ? e.message : `${e.message}\n`;
      if (!out.nextToken || out.nextToken === token) return { text, cursor: token ?? '' };
      token = out.nextToken;
    }
    return { text, cursor: token ?? '' };
  }
}
