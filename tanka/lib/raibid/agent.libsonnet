// raibid/agent.libsonnet: the raibid-agent as a KEDA ScaledJob on Redis Streams (#112).
//
// KEDA starts one Job per 5 pending messages of consumer group `raibid-agents` on
// stream `raibid:jobs` (redis-streams scaler in consumerGroup + lagCount mode, which
// reads the group's lag and scales cleanly to zero), checking every 10 s, 0 to 10 Jobs.
// A Job runs one agent pod: no restarts (restartPolicy Never, backoffLimit 0), a
// scratch workspace (emptyDir), and a long termination grace period so a running
// build can finish. `rollout.strategy: gradual` keeps running Jobs when the
// ScaledJob changes. With Redis auth on, a TriggerAuthentication hands KEDA the
// password from the Redis Secret.
//
// Usage:
//   local agent = import 'raibid/agent.libsonnet';
//   agent.new(cfg)   // { scaledJob, [triggerAuthentication] }
local k8s = import 'k8s.libsonnet';
local util = import 'util.libsonnet';

{
  // env(cfg): the agent's environment (the raibid-ci agent's contract:
  // tests/fixtures/contract/agent.json).
  env(cfg)::
    local a = cfg.agent;
    util.envList({
      AGENT_ID: util.fieldRef('metadata.name'),
      REDIS_HOST: util.configMapRef('raibid-config', 'REDIS_HOST'),
      REDIS_PORT: util.configMapRef('raibid-config', 'REDIS_PORT'),
      QUEUE_STREAM: util.configMapRef('raibid-config', 'QUEUE_STREAM'),
      CONSUMER_GROUP: util.configMapRef('raibid-config', 'CONSUMER_GROUP'),
      GITEA_HOST: util.configMapRef('raibid-config', 'GITEA_HOST'),
      REDIS_PASSWORD: if cfg.redis.auth then util.secretRef(cfg.secrets.names.redis, 'redis-password') else null,
      WORKSPACE_DIR: a.workspaceDir,
      MAX_CONCURRENT_JOBS: a.maxConcurrentJobs,
      POLL_INTERVAL_MS: a.pollIntervalMs,
      LOG_FORMAT: 'json',
      RUST_LOG: cfg.logLevel,
    }),

  triggerAuthName(cfg):: cfg.name('agent') + '-redis',

  triggerAuthentication(cfg):: {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'TriggerAuthentication',
    metadata: k8s.metadata($.triggerAuthName(cfg), cfg.labels('agent')),
    spec: {
      secretTargetRef: [{
        parameter: 'password',
        name: cfg.secrets.names.redis,
        key: 'redis-password',
      }],
    },
  },

  // trigger(cfg): the redis-streams trigger (consumerGroup + lagCount mode).
  trigger(cfg):: {
    type: 'redis-streams',
    metadata: {
      address: cfg.redisAddress,
      stream: cfg.redis.stream,
      consumerGroup: cfg.redis.consumerGroup,
      lagCount: cfg.agent.lagCount,
    },
    [if cfg.redis.auth then 'authenticationRef']: { name: $.triggerAuthName(cfg) },
  },

  container(cfg):: {
    name: 'agent',
    image: cfg.images.agent,
    imagePullPolicy: cfg.imagePullPolicy,
    env: $.env(cfg),
    resources: cfg.agent.resources,
    securityContext: k8s.restrictedSecurityContext(cfg.agent.uid),
    volumeMounts: [
      { name: 'workspace', mountPath: cfg.agent.workspaceDir },
      { name: 'tmp', mountPath: '/tmp' },
    ],
  },

  scaledJob(cfg):: {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledJob',
    metadata: k8s.metadata(cfg.name('agent'), cfg.labels('agent')),
    spec: {
      jobTargetRef: {
        parallelism: 1,
        completions: 1,
        backoffLimit: 0,
        activeDeadlineSeconds: cfg.agent.activeDeadlineSeconds,
        template: {
          metadata: { labels: cfg.labels('agent') },
          spec: {
            restartPolicy: 'Never',
            terminationGracePeriodSeconds: cfg.agent.terminationGracePeriodSeconds,
            automountServiceAccountToken: false,
            securityContext: k8s.podSecurityContext(cfg.agent.uid),
            containers: [$.container(cfg)],
            volumes: [
              { name: 'workspace', emptyDir: { sizeLimit: cfg.agent.workspaceSizeLimit } },
              { name: 'tmp', emptyDir: { sizeLimit: '1Gi' } },
            ],
            [if cfg.imagePullSecrets != [] then 'imagePullSecrets']: [{ name: s } for s in cfg.imagePullSecrets],
          },
        },
      },
      pollingInterval: cfg.agent.pollingInterval,
      minReplicaCount: cfg.agent.minReplicaCount,
      maxReplicaCount: cfg.agent.maxReplicaCount,
      successfulJobsHistoryLimit: 5,
      failedJobsHistoryLimit: 5,
      rollout: { strategy: 'gradual' },
      scalingStrategy: { strategy: 'default' },
      triggers: [$.trigger(cfg)],
    },
  },

  new(cfg):: {
    scaledJob: $.scaledJob(cfg),
    [if cfg.redis.auth then 'triggerAuthentication']: $.triggerAuthentication(cfg),
  },
}
