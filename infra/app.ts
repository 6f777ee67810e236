// The CDK app (cdk.json: `npx tsx infra/app.ts`): settings from context, one stack per stage, and the
// AWS Solutions checks of cdk-nag on everything, so an unacknowledged finding fails `cdk synth`.
// cdk-nag 3 is a CDK policy-validation plugin (Validations), no longer an Aspect.
import { App, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { imageBuilderPropsFromContext } from './config.js';
import { ImageBuilderStack } from './stack.js';

const app = new App();
const props = imageBuilderPropsFromContext(app.node);

new ImageBuilderStack(app, `ImageBuilder-${props.stage}`, {
  ...props,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});

Tags.of(app).add('service', 'imagebuilder');
Tags.of(app).add('stage', props.stage);
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
