// The deployable unit: one stack holding one ImageBuilder, with the outputs a user needs to call it.
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { ImageBuilder, type ImageBuilderProps } from './imagebuilder.js';

export interface ImageBuilderStackProps extends StackProps, ImageBuilderProps {}

export class ImageBuilderStack extends Stack {
  readonly imageBuilder: ImageBuilder;

  constructor(scope: Construct, id: string, props: ImageBuilderStackProps) {
    super(scope, id, {
      description: `Serverless ImageBuilder for Flight Control (stage ${props.stage})`,
      ...props,
    });
    this.imageBuilder = new ImageBuilder(this, 'ImageBuilder', props);

    new CfnOutput(this, 'ApiUrl', {
      value: this.imageBuilder.apiUrl,
      description: 'Base URL of the HTTP API',
    });
    new CfnOutput(this, 'TableName', { value: this.imageBuilder.data.tableName });
    new CfnOutput(this, 'JwtIssuer', { value: this.imageBuilder.jwtIssuer });
    new CfnOutput(this, 'EventBusName', {
      value: this.imageBuilder.eventBus.eventBusName,
      description: 'EventBridge bus of build and export transitions (source "imagebuilder")',
    });
    new CfnOutput(this, 'ImageBuildStateMachineArn', {
      value: this.imageBuilder.stateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'ImageExportStateMachineArn', {
      value: this.imageBuilder.exportStateMachine.stateMachineArn,
    });
    const { userPool, userPoolClient } = this.imageBuilder;
    if (userPool && userPoolClient) {
      new CfnOutput(this, 'UserPoolId', { value: userPool.userPoolId });
      new CfnOutput(this, 'UserPoolClientId', {
        value: userPoolClient.userPoolClientId,
        description: 'App client of the CLI; send the ID token (it carries custom:org_id)',
      });
    }
  }
}
