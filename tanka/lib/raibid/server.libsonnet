// raibid/server.libsonnet: the raibid-server Deployment, Service and optional HPA (#111).
//
// Contract (raibid-ci's server, tests/fixtures/contract/server.json): listens on
// RAIBID_SERVER_HOST:RAIBID_SERVER_PORT (0.0.0.0:8080 in a container), health at
// /health/ready and /health/live, JSON logs with RAIBID_LOG_FORMAT=json, Redis at
// RAIBID_REDIS_URL. It serves no metrics (no /metrics route, no metrics listener), so
// no metrics port is declared.
//
// Usage:
//   local server = import 'raibid/server.libsonnet';
//   server.new(cfg)   // { deployment, service, [hpa], [pdb] }
local k8s = import 'k8s.libsonnet';
local util = import 'util.libsonnet';

{
  // env(cfg): the container environment (secret references first, see util.envList).
  env(cfg)::
    local s = cfg.server;
    local n = cfg.secrets.names;
    util.envList({
      RAIBID_GITEA_WEBHOOK_SECRET: util.secretRef(n.webhooks, 'gitea-webhook-secret'),
      RAIBID_GITHUB_WEBHOOK_SECRET: util.secretRef(n.webhooks, 'github-webhook-secret'),
      // With auth, the whole URL comes from the Redis Secret (key `redis-url`, the
      // password percent-encoded: secrets.redisUrl, tanka/README.md "Secrets"): a
      // password never sits in a plain env value, and `$(REDIS_PASSWORD)` expansion
      // would paste it unencoded.
      RAIBID_REDIS_URL: if cfg.redis.auth then util.secretRef(n.redis, 'redis-url') else 'redis://' + cfg.redisAddress,
      RAIBID_SERVER_HOST: '0.0.0.0',
      RAIBID_SERVER_PORT: s.port,
      RAIBID_LOG_FORMAT: s.logFormat,
      RAIBID_CORS_ENABLED: s.corsEnabled,
      RAIBID_MAX_BODY_SIZE: s.maxBodySize,
      RAIBID_RATE_LIMIT_RPM: s.rateLimitRpm,
      RUST_LOG: cfg.logLevel,
    }),

  container(cfg):: {
    name: 'server',
    image: cfg.images.server,
    imagePullPolicy: cfg.imagePullPolicy,
    ports: [k8s.containerPort('http', cfg.server.port)],
    env: $.env(cfg),
    resources: cfg.server.resources,
    readinessProbe: k8s.httpProbe('/health/ready', 'http', initialDelaySeconds=3, periodSeconds=5),
    livenessProbe: k8s.httpProbe('/health/live', 'http', initialDelaySeconds=10, periodSeconds=10),
    securityContext: k8s.restrictedSecurityContext(cfg.server.uid),
    // read-only root filesystem: scratch space only in /tmp
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
  },

  deployment(cfg)::
    local name = cfg.name('server');
    k8s.deployment(
      name,
      cfg.selector('server'),
      {
        containers: [$.container(cfg)],
        volumes: [{ name: 'tmp', emptyDir: { sizeLimit: '256Mi' } }],
        securityContext: k8s.podSecurityContext(cfg.server.uid),
        affinity: k8s.preferredAntiAffinity(cfg.selector('server')),
        terminationGracePeriodSeconds: 30,
        automountServiceAccountToken: false,
        [if cfg.imagePullSecrets != [] then 'imagePullSecrets']: [{ name: s } for s in cfg.imagePullSecrets],
      },
      // with an HPA the replica count belongs to the autoscaler, not to the render
      replicas=if cfg.server.hpa.enabled then null else cfg.server.replicas,
      labels=cfg.labels('server'),
      podLabels=cfg.labels('server'),
    ),

  service(cfg):: k8s.service(
    cfg.name('server'),
    cfg.selector('server'),
    [k8s.servicePort('http', cfg.server.port)],
    cfg.labels('server'),
  ),

  // pdb(cfg): with 2 or more replicas, a drain or upgrade takes one server at a time.
  pdb(cfg):: k8s.pdb(cfg.name('server'), cfg.selector('server'), 1, cfg.labels('server')),

  hpa(cfg):: k8s.hpa(
    cfg.name('server'),
    cfg.name('server'),
    cfg.server.hpa.minReplicas,
    cfg.server.hpa.maxReplicas,
    cfg.server.hpa.cpuUtilization,
    cfg.labels('server'),
  ),

  new(cfg):: {
    deployment: $.deployment(cfg),
    service: $.service(cfg),
    [if cfg.server.hpa.enabled then 'hpa']: $.hpa(cfg),
    [if cfg.serverMinReplicas > 1 then 'pdb']: $.pdb(cfg),
  },
}
