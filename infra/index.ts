// The public surface for users who put the image builder in their own CDK app.
export {
  DEFAULT_LOG_RETENTION_DAYS,
  DEFAULT_THROTTLING,
  ImageBuilder,
  type ImageBuilderProps,
  type ImageBuilderThrottling,
  validateImageBuilderProps,
} from './imagebuilder.js';
export { ImageBuilderStack, type ImageBuilderStackProps } from './stack.js';
