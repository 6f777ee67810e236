// cdk-nag acknowledgments of IAM5 (wildcard resource) findings, named the way cdk-nag names them: the
// resolved resource with pseudo parameters and references as `<AWS::Region>`, `<Logical.Arn>`.
import { Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { Construct, type IConstruct } from 'constructs';

/** The form cdk-nag gives a resource in its findings. */
export function nagResourceName(scope: IConstruct, value: string): string {
  return flatten(Stack.of(scope).resolve(value));
}

/**
 * Acknowledges `AwsSolutions-IAM5[Resource::<resource>]` on the grantee's principal (and so on its
 * policies), never wider: other wildcards of the same principal still need their own reason.
 */
export function acknowledgeWildcardResource(grantee: iam.IGrantable, resource: string, reason: string): void {
  const principal = grantee.grantPrincipal;
  if (!(principal instanceof Construct)) return;
  Validations.of(principal).acknowledge({
    id: `AwsSolutions-IAM5[Resource::${nagResourceName(principal, resource)}]`,
    reason,
  });
}

function flatten(resolved: unknown): string {
  if (typeof resolved === 'string') return resolved;
  const value = resolved as Record<string, unknown>;
  const join = value['Fn::Join'] as [string, unknown[]] | undefined;
  if (join) return join[1].map(flatten).join(join[0]);
  if (typeof value.Ref === 'string') return `<${value.Ref}>`;
  const getAtt = value['Fn::GetAtt'] as string[] | undefined;
  if (getAtt) return `<${getAtt.join('.')}>`;
  return JSON.stringify(resolved);
}

/** Acknowledges cdk-nag findings on one construct: `{ ruleId: reason }`, each with its own reason. */
export function acknowledge(construct: IConstruct, reasons: Record<string, string>): void {
  for (const [id, reason] of Object.entries(reasons)) Validations.of(construct).acknowledge({ id, reason });
}
