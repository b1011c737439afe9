// Tests of raibid/redis.libsonnet (the Helm values; no chart needed).
local redis = import 'raibid/redis.libsonnet';
local t = import 'test.libsonnet';

local loc = redis.values(t.localCfg);
local stg = redis.values(t.stagingCfg);

{
  'standalone architecture': t.eq(loc.architecture, 'standalone'),
  'no replicas, no sentinel': t.eq([loc.replica.replicaCount, loc.sentinel.enabled], [0, false]),
  'append-only file on': t.ok(std.member(std.split(loc.commonConfiguration, '\n'), 'appendonly yes')),
  'persistence on, 8Gi by default': t.eq(loc.master.persistence, { enabled: true, size: '8Gi' }),
  'requests and limits': t.ok(std.objectHas(loc.master.resources, 'requests') && std.objectHas(loc.master.resources, 'limits')),
  'health probes on': t.eq([loc.master.livenessProbe.enabled, loc.master.readinessProbe.enabled], [true, true]),
  'auth off locally': t.eq(loc.auth, { enabled: false }),
  'auth from the existing Secret elsewhere': t.eq(stg.auth, { enabled: true, existingSecret: 'raibid-redis', existingSecretPasswordKey: 'redis-password' }),
  'no password literal in values': t.ok(!std.objectHas(stg.auth, 'password')),
  'image: bitnamilegacy with a pinned tag': t.eq(loc.image, { registry: 'docker.io', repository: 'bitnamilegacy/redis', tag: '8.2.1-debian-12-r0' }),
  'image verification allows the legacy repository': t.eq(loc.global.security.allowInsecureImages, true),
  'service port 6379': t.eq(loc.master.service.ports.redis, 6379),
  'master Service name used by the apps': t.eq(t.localCfg.redisAddress, 'redis-master.raibid-system.svc.cluster.local:6379'),
}
