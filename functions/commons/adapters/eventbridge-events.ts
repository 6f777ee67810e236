// EventPublisher on EventBridge: one PutEvents entry per transition, on the stack's bus.
import type { EventPublisher, ResourceEvent } from '../ports.js';
import type { AwsJsonClient } from './aws-json.js';

export const EVENT_SOURCE = 'imagebuilder';

export const toPutEventsEntry = (event: ResourceEvent, busName: string) => ({
  Source: EVENT_SOURCE,
  DetailType: event.detailType,
  Detail: JSON.stringify(event.detail),
  EventBusName: busName,
  Resources: [],
});

export class EventBridgePublisher implements EventPublisher {
  constructor(
    private readonly client: AwsJsonClient,
    private readonly busName: string,
  ) {}

  async publish(event: ResourceEvent): Promise<void> {
    const out = await this.client.call<{ FailedEntryCount?: number; Entries?: { ErrorMessage?: string }[] }>(
      'PutEvents',
      { Entries: [toPutEventsEntry(event, this.busName)] },
    );
    if (out.FailedEntryCount)
      throw new Error(`PutEvents failed: ${out.Entries?.[0]?.ErrorMessage ?? 'unknown'}`);
  }
}
