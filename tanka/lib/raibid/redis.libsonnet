// raibid/redis.libsonnet: Redis with Streams, from the Bitnami chart (#95).
//
// Standalone (one master, no replicas, no sentinel), append-only file on, persistent
// volume (8Gi by default), resource limits, the chart's liveness/readiness probes, and
// auth ready to switch on: `cfg.redis.auth: true` reads the password from the existing
// Secret `cfg.secrets.names.redis` (key `redis-password`) instead of letting the chart
// generate one. The master Service is `redis-master` (port 6379); the stream
// `raibid:jobs` and group `raibid-agents` are created by the applications.
//
// Usage:
//   local redis = import 'raibid/redis.libsonnet';
//   redis.values(cfg)   // the Helm values (pure; what the library tests check)
//   redis.new(cfg)      // the rendered chart objects
local helm = (import 'helm.libsonnet').new(std.thisFile);

{
  chart:: '../../charts/redis',

  values(cfg):: {
    global: {
      // The chart verifies images against Bitnami's catalog; the bitnamilegacy
      // repository (README.md, "Images") is outside it.
      security: { allowInsecureImages: true },
    },
    image: cfg.redis.image,
    architecture: 'standalone',
    auth: if cfg.redis.auth then {
      enabled: true,
      existingSecret: cfg.secrets.names.redis,
      existingSecretPasswordKey: 'redis-password',
    } else { enabled: false },
    commonConfiguration: std.join('\n', [
      'appendonly yes',
      'appendfsync everysec',
      'save ""',
    ]),
    master: {
      count: 1,
      persistence: {
        enabled: cfg.redis.persistence.enabled,
        size: cfg.redis.persistence.size,
      },
      resources: cfg.redis.resources,
      livenessProbe: { enabled: true },
      readinessProbe: { enabled: true },
      service: { ports: { redis: cfg.redis.port } },
    },
    replica: { replicaCount: 0 },
    sentinel: { enabled: false },
    metrics: { enabled: false },
  },

  new(cfg):: helm.template(cfg.redis.release, $.chart, {
    namespace: cfg.namespace,
    kubeVersion: cfg.kubeVersion,
    values: $.values(cfg),
    skipTests: true,
  }),
}
