import { describe, expect, it } from 'vitest';
import { toStepEvent } from '../../functions/workflows/image-build.js';

const ref = { orgId: 'o', kind: 'ImageBuild', name: 'b', uid: 'u', generation: 1 };

describe('execution status change → ended step', () => {
  it('maps ABORTED, TIMED_OUT and FAILED with the execution input as the run', () => {
    for (const status of ['ABORTED', 'TIMED_OUT', 'FAILED'] as const) {
      const event = {
        'detail-type': 'Step Functions Execution Status Change' as const,
        detail: {
          status,
          input: JSON.stringify(ref),
          ...(status === 'FAILED' ? { error: 'States.Runtime', cause: 'boom' } : {}),
        },
      };
      expect(toStepEvent(event)).toEqual({
        step: 'ended',
        ref,
        status,
        ...(status === 'FAILED' ? { cause: 'States.Runtime: boom' } : {}),
      });
    }
  });

  it('passes step events through and refuses other statuses', () => {
    const step = { step: 'prepare' as const, ref: ref as never };
    expect(toStepEvent(step)).toBe(step);
    expect(() =>
      toStepEvent({
        'detail-type': 'Step Functions Execution Status Change',
        detail: { status: 'SUCCEEDED', input: '{}' },
      }),
    ).toThrow(/unexpected execution status/);
  });
});
