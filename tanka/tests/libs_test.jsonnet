// Library tests: util, k8s, config naming/labels, and the Helm wrapper (real helm, tiny chart).
local helm = (import 'helm.libsonnet').new(std.thisFile);
local k8s = import 'k8s.libsonnet';
local t = import 'test.libsonnet';
local util = import 'util.libsonnet';

local rendered = helm.template('demo', './charts/mini', {
  namespace: 'ns1',
  values: { greeting: 'hi' },
});

{
  'util.deepMerge merges nested objects': t.eq(util.deepMerge({ a: { b: 1, c: 2 }, d: [1] }, { a: { c: 3 }, d: [2] }), { a: { b: 1, c: 3 }, d: [2] }),
  'util.deepMergeAll folds left to right': t.eq(util.deepMergeAll([{ a: 1 }, { a: 2, b: 1 }, { b: 3 }]), { a: 2, b: 3 }),
  'util.envList puts references before values and drops nulls': t.eq(
    util.envList({ B: 'x', A: util.secretRef('s', 'k'), C: null, D: 5 }),
    [
      { name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
      { name: 'B', value: 'x' },
      { name: 'D', value: '5' },
    ],
  ),
  'util.configMapRef': t.eq(util.configMapRef('c', 'k'), { valueFrom: { configMapKeyRef: { name: 'c', key: 'k' } } }),
  'util.fieldRef': t.eq(util.fieldRef('metadata.name'), { valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }),
  'util.listObjects finds nested objects': t.eq(
    std.length(util.listObjects({ a: { apiVersion: 'v1', kind: 'A' }, b: { c: [{ apiVersion: 'v1', kind: 'B' }] }, d: 1 })),
    2,
  ),
  'util.mapObjects patches every object': t.eq(
    util.mapObjects({ a: { apiVersion: 'v1', kind: 'A' }, n: 1 }, function(o) o { x: 1 }),
    { a: { apiVersion: 'v1', kind: 'A', x: 1 }, n: 1 },
  ),
  'k8s.configMap stringifies values': t.eq(k8s.configMap('c', { n: 1, b: true }).data, { n: '1', b: 'true' }),
  'k8s.deployment omits replicas when null': t.ok(!std.objectHas(k8s.deployment('d', { a: 'b' }, {}, replicas=null).spec, 'replicas')),
  'k8s.deployment selects its pods': t.eq(k8s.deployment('d', { a: 'b' }, {}).spec.template.metadata.labels, { a: 'b' }),
  'k8s.restrictedSecurityContext is non-root without escalation': t.eq(
    [k8s.restrictedSecurityContext().runAsNonRoot, k8s.restrictedSecurityContext().allowPrivilegeEscalation],
    [true, false],
  ),
  'k8s.hpa targets a Deployment': t.eq(k8s.hpa('h', 'd', 2, 5, 70).spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'd' }),
  'config.name prefixes the project': t.eq(t.localCfg.name('server'), 'raibid-server'),
  'config.labels follow app.kubernetes.io': t.eq(t.stagingCfg.labels('server'), {
    'app.kubernetes.io/name': 'raibid-server',
    'app.kubernetes.io/instance': 'raibid-ci',
    'app.kubernetes.io/component': 'server',
    'app.kubernetes.io/part-of': 'raibid-ci',
    'app.kubernetes.io/managed-by': 'tanka',
    'app.kubernetes.io/version': '1.2.3',
    'raibid.dev/environment': 'staging',
  }),
  'config.selector is the stable subset': t.eq(std.objectFields(t.localCfg.selector('agent')), ['app.kubernetes.io/instance', 'app.kubernetes.io/name']),
  'config default namespace': t.eq(t.localCfg.namespace, 'raibid-system'),
  'config overrides are deep-merged': t.eq(
    (t.config.new('x', { server: { replicas: 4 } })).server.port,
    8080,
  ),
  'helm.template renders the chart with values': t.eq(rendered.config_map_demo_greeting.data.greeting, 'hi'),
  'helm.template passes the namespace': t.eq(rendered.config_map_demo_greeting.metadata.namespace, 'ns1'),
  'helm.withLabels labels every object': t.eq(
    (import 'helm.libsonnet').withLabels(rendered, { x: 'y' }).config_map_demo_greeting.metadata.labels,
    { x: 'y' },
  ),
}
