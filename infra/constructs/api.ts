// The HTTP API: one route per entry of the shared route table (functions/commons/http/routes.ts), each
// integrated with the Lambda of its handler file, behind a JWT authorizer except the public routes.
// The $default stage logs every request and throttles to the configured rate and burst.
import { Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { ApiFunction as ApiFunctionName, Route } from '../../functions/commons/http/routes.js';

export interface ApiProps {
  readonly routes: readonly Route[];
  /** The Lambda serving each handler file named by the routes. */
  readonly handlers: Readonly<Record<ApiFunctionName, lambda.IFunction>>;
  readonly jwtIssuer: string;
  readonly jwtAudience: string[];
  readonly throttling: { readonly rateLimit: number; readonly burstLimit: number };
  readonly logRetention: logs.RetentionDays;
  readonly apiName?: string;
}

/** One JSON line per request; only variables that HTTP APIs define. */
const ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    requestTime: '$context.requestTime',
    sourceIp: '$context.identity.sourceIp',
    userAgent: '$context.identity.userAgent',
    routeKey: '$context.routeKey',
    path: '$context.path',
    status: '$context.status',
    protocol: '$context.protocol',
    responseLength: '$context.responseLength',
    responseLatency: '$context.responseLatency',
    integrationLatency: '$context.integrationLatency',
    integrationError: '$context.integrationErrorMessage',
    authorizerError: '$context.authorizer.error',
    sub: '$context.authorizer.claims.sub',
  }),
);

export class Api extends Construct {
  readonly httpApi: apigw.HttpApi;
  readonly stage: apigw.HttpStage;
  readonly authorizer: HttpJwtAuthorizer;
  readonly accessLogs: logs.LogGroup;
  readonly routes: apigw.HttpRoute[] = [];

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);

    this.httpApi = new apigw.HttpApi(this, 'HttpApi', {
      apiName: props.apiName,
      description: 'Flight Control ImageBuilder API',
      // The default stage is created below with access logging and throttling.
      createDefaultStage: false,
    });

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', { retention: props.logRetention });
    this.stage = new apigw.HttpStage(this, 'DefaultStage', {
      httpApi: this.httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: props.throttling,
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(this.accessLogs),
        format: ACCESS_LOG_FORMAT,
      },
    });

    this.authorizer = new HttpJwtAuthorizer('JwtAuthorizer', props.jwtIssuer, {
      authorizerName: 'jwt',
      jwtAudience: props.jwtAudience,
    });

    const integrations = new Map<ApiFunctionName, HttpLambdaIntegration>();
    const integrationFor = (fn: ApiFunctionName): HttpLambdaIntegration => {
      let integration = integrations.get(fn);
      if (!integration) {
        integration = new HttpLambdaIntegration(`${fn}-integration`, props.handlers[fn]);
        integrations.set(fn, integration);
      }
      return integration;
    };

    for (const route of props.routes) {
      const routeKey = apigw.HttpRouteKey.with(route.path, apigw.HttpMethod[route.method]);
      const httpRoute = new apigw.HttpRoute(this, routeConstructId(route), {
        httpApi: this.httpApi,
        routeKey,
        integration: integrationFor(route.fn),
        authorizer: route.public ? new apigw.HttpNoneAuthorizer() : this.authorizer,
      });
      if (route.public) {
        Validations.of(httpRoute).acknowledge({
          id: 'AwsSolutions-APIG4',
          reason: `${route.method} ${route.path} is public by design (CONTRACT §2): health checks and clients discovering the service call it without a token, and it returns only service-wide data (status, version or the API description), nothing of any org.`,
        });
      }
      this.routes.push(httpRoute);
    }
  }

  /** The base URL of the API, ending with `/`. */
  get url(): string {
    return this.stage.url;
  }
}

/** `GET /api/v1/repositories/{name}` → `GET-api-v1-repositories-name`: construct ids may not hold `/`. */
function routeConstructId(route: Route): string {
  return `${route.method}${route.path.replace(/[^A-Za-z0-9]+/g, '-')}`.replace(/-+$/, '');
}
