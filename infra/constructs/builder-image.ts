// The builder image in AWS: functions/builder/Containerfile, built by the stack itself at deploy, so no
// Docker is needed on the deployer's machine. A bootstrap CodeBuild project per architecture (on
// CodeBuild's own standard image, whose Docker builds the Containerfile) takes the builder directory as an
// S3 asset, builds FROM the digest-pinned public ECR base, and pushes to this stack's ECR repository; a
// custom resource starts it whenever the asset's hash changes and waits for the digests, which the builder
// projects (and EKS Jobs) then run pinned: `<repository>@sha256:<digest>`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CustomResource, DockerImage, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { BUILDER_CONTEXT_FILES, BUILDER_DIR, buildspecJson } from '../../functions/builder/files.js';
import { ApiFunction } from './api-function.js';
import { acknowledge } from './nag.js';

/**
 * Debian 12 slim from Amazon ECR Public's mirror of Docker's official images, pinned by digest. Not
 * pulled from this workspace (no route to a public registry): check it before the first deployment
 * (README, "The builder image") and override it with the `builderBaseImage` context.
 */
export const DEFAULT_BUILDER_BASE_IMAGE =
  'public.ecr.aws/docker/library/debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251';
/** snapshot.debian.org date the image's packages come from: the same date gives the same versions. */
export const DEFAULT_DEBIAN_SNAPSHOT = '20261130T000000Z';

export type BuilderArch = 'x86_64' | 'aarch64';

export interface BuilderImageProps {
  /** @default DEFAULT_BUILDER_BASE_IMAGE */
  readonly baseImage?: string;
  /** @default DEFAULT_DEBIAN_SNAPSHOT */
  readonly debianSnapshot?: string;
  /** The architectures to build (aarch64 only where CodeBuild has ARM_CONTAINER). */
  readonly architectures: BuilderArch[];
  readonly logRetention: logs.RetentionDays;
}

/**
 * The bootstrap project's buildspec: Docker builds the Containerfile and pushes it; post_build (which
 * runs whether the build phase succeeded or not) answers the custom resource with the digest.
 */
export function bootstrapBuildSpec(): codebuild.BuildSpec {
  return codebuild.BuildSpec.fromObject({
    version: '0.2',
    env: { shell: 'bash' },
    phases: {
      build: {
        commands: [
          // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
          'aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}"',
          'docker build --pull --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg SNAPSHOT="$DEBIAN_SNAPSHOT" -t "$REPOSITORY_URI:$IMAGE_TAG" -f Containerfile .',
          'docker push "$REPOSITORY_URI:$IMAGE_TAG"',
          'export IMAGE_DIGEST="$(docker inspect --format \'{{index .RepoDigests 0}}\' "$REPOSITORY_URI:$IMAGE_TAG" | sed \'s/^.*@//\')"',
        ],
      },
      post_build: {
        commands: [
          [
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
            'if [ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ] && [[ "${IMAGE_DIGEST:-}" =~ ^sha256:[0-9a-f]{64}$ ]]; then status=SUCCESS; reason="pushed $REPOSITORY_URI@$IMAGE_DIGEST"; else status=FAILED; reason="the builder image build failed: see CodeBuild build $CODEBUILD_BUILD_ID"; fi',
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
            'printf \'{"Status":"%s","Reason":"%s","PhysicalResourceId":"%s","StackId":"%s","RequestId":"%s","LogicalResourceId":"%s","Data":{"Digest":"%s"}}\' "$status" "$reason" "$CFN_PHYSICAL_ID" "$CFN_STACK_ID" "$CFN_REQUEST_ID" "$CFN_LOGICAL_ID" "${IMAGE_DIGEST#sha256:}" > /tmp/cfn-response.json',
            'curl -fsS --retry 5 -X PUT -H "Content-Type:" --data-binary @/tmp/cfn-response.json "$CFN_RESPONSE_URL"',
          ].join('; '),
        ],
      },
    },
  });
}

export class BuilderImage extends Construct {
  readonly repository: ecr.Repository;
  /** The builder directory as the bootstrap projects' source (Containerfile, scripts, buildspec.json). */
  readonly source: s3assets.Asset;
  readonly architectures: BuilderArch[];
  private readonly images = new Map<BuilderArch, CustomResource>();

  constructor(scope: Construct, id: string, props: BuilderImageProps) {
    super(scope, id);
    const baseImage = props.baseImage ?? DEFAULT_BUILDER_BASE_IMAGE;
    this.architectures = props.architectures;
    this.repository = new ecr.Repository(this, 'Repository', {
      imageScanOnPush: true,
      imageTagMutability: ecr.TagMutability.IMMUTABLE,
      removalPolicy: RemovalPolicy.DESTROY,
      emptyOnDelete: true,
      lifecycleRules: [{ description: 'Keep the last 10 images', maxImageCount: 10 }],
    });
    // Staged at synth without Docker: the listed files plus the buildspec as JSON.
    this.source = new s3assets.Asset(this, 'Source', {
      path: BUILDER_DIR,
      bundling: {
        image: DockerImage.fromRegistry('local-bundling-only'),
        local: {
          tryBundle(outputDir: string) {
            for (const name of BUILDER_CONTEXT_FILES) {
              fs.copyFileSync(path.join(BUILDER_DIR, name), path.join(outputDir, name));
            }
            fs.writeFileSync(path.join(outputDir, 'buildspec.json'), buildspecJson());
            return true;
          },
        },
      },
    });
    const start = new ApiFunction(this, 'Start', {
      entry: 'functions/deploy/builder-image.ts',
      description: 'Builder image custom resource: starts the bootstrap build, which answers CloudFormation',
      logRetention: props.logRetention,
    });
    // The bootstrap role, written in full (no CodeBuild defaults: report groups, /aws/codebuild/*).
    const role = new iam.Role(this, 'BootstrapRole', {
      assumedBy: new iam.ServicePrincipal('codebuild.amazonaws.com'),
      description: `Bootstrap builds of the builder image (${this.node.path})`,
    });
    this.repository.grantPullPush(role);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject', 's3:GetObjectVersion'],
        resources: [this.source.bucket.arnForObjects(this.source.s3ObjectKey)],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetBucketAcl', 's3:GetBucketLocation'],
        resources: [this.source.bucket.bucketArn],
      }),
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ecr:GetAuthorizationToken (docker login to the stack’s repository) supports no resource-level permissions.',
    });
    for (const arch of props.architectures) {
      const logGroup = new logs.LogGroup(this, `Logs${arch}`, { retention: props.logRetention });
      logGroup.grantWrite(role);
      const project = new codebuild.Project(
        this,
        arch === 'x86_64' ? 'BootstrapX86_64' : 'BootstrapAarch64',
        {
          description: `ImageBuilder: builds the ${arch} builder image (functions/builder/Containerfile)`,
          source: codebuild.Source.s3({ bucket: this.source.bucket, path: this.source.s3ObjectKey }),
          buildSpec: bootstrapBuildSpec(),
          role: role.withoutPolicyUpdates(),
          environment: {
            buildImage:
              arch === 'x86_64'
                ? codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5
                : codebuild.LinuxArmBuildImage.AMAZON_LINUX_2023_STANDARD_3_0,
            computeType: arch === 'x86_64' ? codebuild.ComputeType.MEDIUM : codebuild.ComputeType.LARGE,
            privileged: true, // Docker builds the image; only this repository's files run here
          },
          environmentVariables: {
            REPOSITORY_URI: { value: this.repository.repositoryUri },
            BASE_IMAGE: { value: baseImage },
            DEBIAN_SNAPSHOT: { value: props.debianSnapshot ?? DEFAULT_DEBIAN_SNAPSHOT },
          },
          timeout: Duration.minutes(50),
          logging: { cloudWatch: { logGroup } },
        },
      );
      acknowledge(project, {
        'AwsSolutions-CB3':
          'Docker builds the builder image from this repository’s Containerfile; no tenant code runs on these projects.',
        'AwsSolutions-CB4':
          'The project produces an image in ECR (encrypted at rest by ECR) and no CodeBuild artifacts.',
      });
      start.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['codebuild:StartBuild'], resources: [project.projectArn] }),
      );
      const image = new CustomResource(this, `Image${arch}`, {
        serviceToken: start.function.functionArn,
        // The build answers within its own timeout (50 minutes), under CloudFormation's default hour.
        properties: { Project: project.projectName, ImageTag: `${this.source.assetHash}-${arch}` },
      });
      image.node.addDependency(role);
      this.images.set(arch, image);
    }
  }

  /** `sha256:<hex>` of the architecture's image (a deploy-time value). */
  digest(arch: BuilderArch): string {
    const image = this.images.get(arch);
    if (!image) throw new Error(`no ${arch} builder image in this deployment`);
    return `sha256:${image.getAttString('Digest')}`;
  }
  /** The architecture's image pinned by digest, for a CodeBuild project (pull with the project's role). */
  buildImage(arch: BuilderArch): codebuild.IBuildImage {
    return arch === 'x86_64'
      ? codebuild.LinuxBuildImage.fromEcrRepository(this.repository, this.digest(arch))
      : codebuild.LinuxArmBuildImage.fromEcrRepository(this.repository, this.digest(arch));
  }

  /** `<repository URI>@sha256:<hex>` of the architecture's image (EKS Jobs). */
  imageUri(arch: BuilderArch): string {
    return this.repository.repositoryUriForDigest(this.digest(arch));
  }
}
