// The EKS runner (context `runner: eks`): builds and exports run as privileged Kubernetes Jobs on an
// existing EKS cluster, started and followed by the state machines' `eks:runJob.sync` states, instead of
// on CodeBuild. Everything here is plain CloudFormation (no kubectl provider): the builder pods' IAM role
// bound to their service account with EKS Pod Identity, and an EKS access entry per state machine role
// (namespace-scoped edit: create, follow and delete Jobs and read their pods). The cluster needs the
// Pod Identity agent add-on, authentication mode API (or API_AND_CONFIG_MAP), a public endpoint
// (Step Functions reaches the Kubernetes API from outside), and the namespace and service account.
import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as eks from 'aws-cdk-lib/aws-eks';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { grantRepositoryPasswordsRead } from './build-workflow.js';
import type { BuilderImage } from './builder-image.js';

/** The cluster side of the EKS runner (context keys `eks…`, README "Deploy to AWS"). */
export interface EksRunnerSettings {
  /** Name of the existing EKS cluster. */
  readonly clusterName: string;
  /** Its Kubernetes API endpoint (https://…, public: Step Functions calls it). */
  readonly endpoint: string;
  /** Its certificate authority data (base64, as `aws eks describe-cluster` shows it). */
  readonly certificateAuthority: string;
  /** Namespace the Jobs run in (it must exist). @default imagebuilder */
  readonly namespace?: string;
  /** Service account of the builder pods (it must exist in the namespace). @default imagebuilder-builder */
  readonly serviceAccount?: string;
  /**
   * Container image of the builder pods, for every architecture (a manifest list, built from
   * functions/builder/Containerfile). @default the stack's own builder image of each architecture, by digest
   */
  readonly builderImage?: string;
}

/** Per stage, so that two stages can share a cluster: `imagebuilder-<stage>`. */
export const defaultEksNamespace = (stage: string) => `imagebuilder-${stage}`;
/** Per stage: `imagebuilder-builder-<stage>`. */
export const defaultEksServiceAccount = (stage: string) => `imagebuilder-builder-${stage}`;

export interface EksRunnerProps {
  readonly stage: string;
  readonly settings: EksRunnerSettings;
  /** The stack's builder image (the pods' image unless settings.builderImage overrides it). */
  readonly image: BuilderImage;
}

export class EksRunner extends Construct {
  readonly cluster: eks.ICluster;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The builder pods' role (EKS Pod Identity). */
  readonly podRole: iam.Role;
  private readonly settings: EksRunnerSettings;
  private readonly image: BuilderImage;

  constructor(scope: Construct, id: string, props: EksRunnerProps) {
    super(scope, id);
    this.settings = props.settings;
    this.image = props.image;
    this.namespace = props.settings.namespace ?? defaultEksNamespace(props.stage);
    this.serviceAccount = props.settings.serviceAccount ?? defaultEksServiceAccount(props.stage);
    this.cluster = eks.Cluster.fromClusterAttributes(this, 'Cluster', {
      clusterName: props.settings.clusterName,
      clusterEndpoint: props.settings.endpoint,
      clusterCertificateAuthorityData: props.settings.certificateAuthority,
    });

    this.podRole = new iam.Role(this, 'PodRole', {
      assumedBy: new iam.SessionTagsPrincipal(new iam.ServicePrincipal('pods.eks.amazonaws.com')),
      description: `Builder pods of ${this.node.path} (EKS Pod Identity, ${this.namespace}/${this.serviceAccount})`,
    });
    new eks.CfnPodIdentityAssociation(this, 'PodIdentity', {
      clusterName: props.settings.clusterName,
      namespace: this.namespace,
      serviceAccount: this.serviceAccount,
      roleArn: this.podRole.roleArn,
    });
    // No S3 and no Secrets Manager permission: a pod reads its context and registry passwords and
    // writes its disk image and result through the URLs its trusted step presigned.
    props.image.repository.grantPull(this.podRole);
  }

  get clusterArn(): string {
    return Stack.of(this).formatArn({
      service: 'eks',
      resource: 'cluster',
      resourceName: this.settings.clusterName,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
  }

  /** The definition placeholders of the runJob states (statemachines/*.asl.json). */
  get substitutions(): Record<string, string> {
    return {
      EksClusterName: this.settings.clusterName,
      EksEndpoint: this.settings.endpoint,
      EksCertificateAuthority: this.settings.certificateAuthority,
      EksNamespace: this.namespace,
      EksServiceAccount: this.serviceAccount,
      EksBuilderImageX86_64: this.settings.builderImage ?? this.image.imageUri('x86_64'),
      EksBuilderImageAarch64:
        this.settings.builderImage ??
        (this.image.architectures.includes('aarch64') ? this.image.imageUri('aarch64') : 'none'),
    };
  }

  /**
   * A state machine's `eks:runJob.sync`: eks:DescribeCluster on this cluster (IAM), and Kubernetes
   * permissions through an access entry of its role with AmazonEKSEditPolicy scoped to the namespace.
   */
  grantRunJobs(role: iam.IRole, id: string): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['eks:DescribeCluster'], resources: [this.clusterArn] }),
    );
    new eks.CfnAccessEntry(this, `AccessEntry${id}`, {
      clusterName: this.settings.clusterName,
      principalArn: role.roleArn,
      type: 'STANDARD',
      accessPolicies: [
        {
          policyArn: `arn:${Stack.of(this).partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy`,
          accessScope: { type: 'namespace', namespaces: [this.namespace] },
        },
      ],
    });
  }
}

/** Placeholder values of the runJob states when the runner is CodeBuild (the states are never entered). */
export const UNUSED_EKS_SUBSTITUTIONS: Record<string, string> = {
  EksClusterName: 'none',
  EksEndpoint: 'https://eks-runner-not-configured.invalid',
  EksCertificateAuthority: 'none',
  EksNamespace: 'none',
  EksServiceAccount: 'none',
  EksBuilderImageX86_64: 'none',
  EksBuilderImageAarch64: 'none',
};
