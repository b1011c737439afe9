// Tests of raibid/keda.libsonnet (the Helm values; no chart needed).
local keda = import 'raibid/keda.libsonnet';
local t = import 'test.libsonnet';

local v = keda.values(t.localCfg);

{
  'CRDs in the output': t.eq(v.crds.install, true),
  'operator, metrics server and webhooks': t.eq([v.metricsServer.enabled, v.webhooks.enabled], [true, true]),
  'resources for every component': t.eq(std.objectFields(v.resources), ['metricServer', 'operator', 'webhooks']),
  'limits set': t.has(v, 'resources.operator.limits.memory'),
  'pods run as non-root': t.eq(v.podSecurityContext.operator.runAsNonRoot, true),
  'watches all namespaces': t.eq(v.watchNamespace, ''),
  'reads Secrets only in its own namespace': t.eq(
    [v.permissions.operator.restrict.secret, v.permissions.metricServer.restrict.secret],
    [true, true],
  ),
}
