// The EKS runner (context `runner: eks`): builds and exports run as privileged Kubernetes Jobs on an
// existing EKS cluster, started and followed by the state machines' `eks:runJob.sync` states, instead of
// on CodeBuild. Everything here is plain CloudFormation (no kubectl provider): the builder pods' IAM role
// bound to their service account with EKS Pod Identity, and an EKS access entry per state machine role
// (namespace-scoped edit: create, follow and delete Jobs and read their pods). The cluster needs the
// Pod Identity agent add-on, authentication mode API (or API_AND_CONFIG_MAP), a public endpoint
// (Step Functions reaches the Kubernetes API from outside), and the namespace and service account.
import * as path from 'node:path';
import { ArnFormat, Stack } from 'aws-cdk-lib';
import * as eks from 'aws-cdk-lib/aws-eks';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';
import { PROJECT_ROOT } from './api-function.js';
import {
  type BuildContextStore,
  type Builders,
  CONTEXT_PREFIX,
  grantRepositoryPasswordsRead,
} from './build-workflow.js';
import { acknowledgeWildcardResource } from './nag.js';
import type { ServiceSecrets } from './secrets.js';

/** functions/builder/eks-job.sh: the builder pod's entrypoint around the builder and exporter scripts. */
export const EKS_JOB_SCRIPT = path.join(PROJECT_ROOT, 'functions/builder/eks-job.sh');

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
  /** Container image of the builder pods: bash, AWS CLI v2, buildah, podman, coreutils. */
  readonly builderImage: string;
}

export const DEFAULT_EKS_NAMESPACE = 'imagebuilder';
export const DEFAULT_EKS_SERVICE_ACCOUNT = 'imagebuilder-builder';

export interface EksRunnerProps {
  readonly settings: EksRunnerSettings;
  readonly contextStore: BuildContextStore;
  readonly secrets: ServiceSecrets;
  /** The builder and exporter scripts are the Builders' assets, the same files CodeBuild runs. */
  readonly builders: Builders;
}

export class EksRunner extends Construct {
  readonly cluster: eks.ICluster;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The builder pods' role (EKS Pod Identity). */
  readonly podRole: iam.Role;
  readonly jobScript: s3assets.Asset;
  private readonly settings: EksRunnerSettings;
  private readonly builders: Builders;

  constructor(scope: Construct, id: string, props: EksRunnerProps) {
    super(scope, id);
    this.settings = props.settings;
    this.builders = props.builders;
    this.namespace = props.settings.namespace ?? DEFAULT_EKS_NAMESPACE;
    this.serviceAccount = props.settings.serviceAccount ?? DEFAULT_EKS_SERVICE_ACCOUNT;
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
    // What CodeBuild's role may do, and the result objects CodeBuild's exported variables make unneeded
    // there: contexts (read), each build job's result (write, under contexts/<org>/<run>/results/ only),
    // disk images and export results (write, artifacts/*), repository passwords (read).
    props.contextStore.grantRead(this.podRole);
    const results = props.contextStore.bucket.arnForObjects(`${CONTEXT_PREFIX}*/results/*`);
    this.podRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['s3:PutObject'], resources: [results] }),
    );
    acknowledgeWildcardResource(
      this.podRole,
      results,
      `A build job writes its result (the pushed digest) as ${CONTEXT_PREFIX}<org>/<run>/results/<arch>.json, named at run time; only result objects of run contexts.`,
    );
    props.contextStore.grantArtifactsWrite(this.podRole);
    grantRepositoryPasswordsRead(this.podRole, this, props.secrets, 'Builder pods');
    this.jobScript = new s3assets.Asset(this, 'JobScript', { path: EKS_JOB_SCRIPT });
    this.podRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [
          this.jobScript,
          props.builders.script,
          props.builders.exporterScript,
          props.builders.commonScript,
        ].map((a) => a.bucket.arnForObjects(a.s3ObjectKey)),
      }),
    );
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
      EksBuilderImage: this.settings.builderImage,
      EksJobScriptUrl: this.jobScript.s3ObjectUrl,
      BuilderScriptUrl: this.builders.script.s3ObjectUrl,
      ExporterScriptUrl: this.builders.exporterScript.s3ObjectUrl,
      CommonScriptUrl: this.builders.commonScript.s3ObjectUrl,
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
  EksBuilderImage: 'none',
  EksJobScriptUrl: 'none',
  BuilderScriptUrl: 'none',
  ExporterScriptUrl: 'none',
  CommonScriptUrl: 'none',
};
