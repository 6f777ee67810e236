// The public surface for users who put the image builder in their own CDK app.
export {
  BUILDER_COMPUTE_TYPES,
  type BuilderComputeType,
  DEFAULT_BUILD_TIMEOUT_MINUTES,
  DEFAULT_BUILDER_COMPUTE_TYPE,
  DEFAULT_LOG_RETENTION_DAYS,
  DEFAULT_THROTTLING,
  ImageBuilder,
  type ImageBuilderProps,
  type ImageBuilderThrottling,
  validateImageBuilderProps,
} from './imagebuilder.js';
export { ImageBuilderStack, type ImageBuilderStackProps } from './stack.js';
