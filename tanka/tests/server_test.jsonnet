// Tests of raibid/server.libsonnet.
local server = import 'raibid/server.libsonnet';
local t = import 'test.libsonnet';

local loc = server.new(t.localCfg);
local prod = server.new(t.prodCfg);
local c = loc.deployment.spec.template.spec.containers[0];
local env = t.env(c);
local prodEnv = t.env(prod.deployment.spec.template.spec.containers[0]);

{
  'readiness probe /health/ready on 8080': t.eq([c.readinessProbe.httpGet.path, c.ports[0].containerPort], ['/health/ready', 8080]),
  'liveness probe /health/live': t.eq(c.livenessProbe.httpGet.path, '/health/live'),
  'binds 0.0.0.0': t.eq(env.RAIBID_SERVER_HOST.value, '0.0.0.0'),
  'port 8080': t.eq(env.RAIBID_SERVER_PORT.value, '8080'),
  'JSON logs': t.eq(env.RAIBID_LOG_FORMAT.value, 'json'),
  'Redis URL without auth locally': t.eq(env.RAIBID_REDIS_URL.value, 'redis://redis-master.raibid-system.svc.cluster.local:6379'),
  'Redis URL with auth: the whole URL from the Secret': t.eq(prodEnv.RAIBID_REDIS_URL.valueFrom.secretKeyRef, { name: 'raibid-redis', key: 'redis-url' }),
  'no password in a plain env value': t.ok(!std.objectHas(prodEnv, 'REDIS_PASSWORD') && !std.objectHas(prodEnv.RAIBID_REDIS_URL, 'value')),
  'PodDisruptionBudget when 2 or more replicas run': t.eq(
    [std.objectHas(loc, 'pdb'), std.objectHas(server.new(t.config.new('staging', { server: { replicas: 2 } })), 'pdb'), std.objectHas(prod, 'pdb')],
    [false, true, true],
  ),
  'the PDB selects the server pods': t.eq(prod.pdb.spec, { maxUnavailable: 1, selector: { matchLabels: prod.deployment.spec.selector.matchLabels } }),
  'webhook secrets from the Secret': t.eq(env.RAIBID_GITEA_WEBHOOK_SECRET.valueFrom.secretKeyRef, { name: 'raibid-webhooks', key: 'gitea-webhook-secret' }),
  'requests 500m/512Mi, limits 1/1Gi': t.eq(c.resources, { requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '1', memory: '1Gi' } }),
  'non-root, no privilege escalation': t.eq([c.securityContext.runAsNonRoot, c.securityContext.allowPrivilegeEscalation], [true, false]),
  'preferred pod anti-affinity': t.has(loc.deployment.spec.template.spec, 'affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution'),
  // the raibid-ci server serves no metrics: no port may claim it does
  'Service port 8080 only': t.eq([[p.name, p.port] for p in loc.service.spec.ports], [['http', 8080]]),
  'no HPA unless enabled': t.ok(!std.objectHas(loc, 'hpa')),
  'HPA when enabled': t.eq(prod.hpa.spec.scaleTargetRef.name, 'raibid-server'),
  'replicas left to the HPA': t.ok(!std.objectHas(prod.deployment.spec, 'replicas')),
  'image from the configuration': t.eq(prod.deployment.spec.template.spec.containers[0].image, 'reg.example/raibid-server:1.2.3'),
  'pull secret outside local': t.eq(prod.deployment.spec.template.spec.imagePullSecrets, [{ name: 'raibid-registry' }]),
}
