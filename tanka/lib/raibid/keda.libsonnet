// raibid/keda.libsonnet: KEDA from the kedacore chart (#97).
//
// Operator (`keda-operator`), metrics API server, admission webhooks and their
// service accounts, with the KEDA CRDs in the output (`crds.install`), and resource
// requests/limits on each. KEDA watches all namespaces but reads Secrets only in its
// own (`permissions.*.restrict.secret`).
//
// Usage:
//   local keda = import 'raibid/keda.libsonnet';
//   keda.values(cfg)   // the Helm values (pure)
//   keda.new(cfg)      // the rendered chart objects, CRDs included
local helm = (import 'helm.libsonnet').new(std.thisFile);

{
  chart:: '../../charts/keda',

  values(cfg):: {
    crds: { install: true },
    operator: { replicaCount: 1 },
    metricsServer: { enabled: true, replicaCount: 1 },
    webhooks: { enabled: true, replicaCount: 1 },
    watchNamespace: '',
    // Secrets: the operator and metrics server read only those of their own namespace
    // (a Role there, KEDA_RESTRICT_SECRET_ACCESS), not every Secret in the cluster. The
    // Redis Secret the agent's TriggerAuthentication names lives in that namespace.
    permissions: {
      operator: { restrict: { secret: true } },
      metricServer: { restrict: { secret: true } },
    },
    resources: {
      operator: cfg.keda.resources,
      metricServer: cfg.keda.resources,
      webhooks: cfg.keda.resources,
    },
    podSecurityContext: {
      operator: { runAsNonRoot: true },
      metricServer: { runAsNonRoot: true },
      webhooks: { runAsNonRoot: true },
    },
  },

  new(cfg):: helm.template(cfg.keda.release, $.chart, {
    namespace: cfg.namespace,
    kubeVersion: cfg.kubeVersion,
    values: $.values(cfg),
    includeCrds: true,
    skipTests: true,
  }),
}
