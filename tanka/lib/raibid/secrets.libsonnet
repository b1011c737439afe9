// raibid/secrets.libsonnet: the common ConfigMap and the Secrets of the stack (#113).
//
// - `raibid-config` (ConfigMap): Redis connection, Gitea URL, stream and consumer
//   group names, log settings. Server and agent read it.
// - Secrets `cfg.secrets.names.*`: Redis password, Gitea admin credentials, webhook
//   secrets, registry credentials. They are rendered ONLY when `cfg.secrets.values` is
//   set, which only the local environment does, from the file `doit secrets:local`
//   generates (random, per machine, gitignored). Staging and prod leave it null: the
//   Secrets are created in the cluster (README.md, "Secrets") and only referenced.
//
// Usage:
//   local secrets = import 'raibid/secrets.libsonnet';
//   secrets.new(cfg)   // { config: ConfigMap, secrets: { redis: Secret, ... } or {} }
local k8s = import 'k8s.libsonnet';

{
  // The keys `doit secrets:local` writes into environments/local/secrets.local.json
  // (one list, shared with tasks/tanka.py).
  localKeys:: import 'secret-keys.json',

  // checkValues(values): the values, or an error naming what is missing and the fix.
  checkValues(values)::
    local missing = [k for k in $.localKeys if !std.objectHas(values, k) || !std.isString(values[k]) || values[k] == ''];
    assert missing == [] :
           'environments/local/secrets.local.json lacks %s: run `doit secrets:local` (it keeps existing values and adds missing ones)' % std.join(', ', missing);
    values,

  // configMap(cfg): the common, non-secret configuration.
  configMap(cfg):: k8s.configMap('raibid-config', {
    REDIS_HOST: '%s.%s.svc.cluster.local' % [cfg.redis.host, cfg.namespace],
    REDIS_PORT: cfg.redis.port,
    REDIS_AUTH: cfg.redis.auth,
    QUEUE_STREAM: cfg.redis.stream,
    CONSUMER_GROUP: cfg.redis.consumerGroup,
    GITEA_HOST: cfg.giteaUrl,
    LOG_FORMAT: 'json',
    LOG_LEVEL: cfg.logLevel,
  }, cfg.labels('config')),

  // registryHost(cfg): Gitea's OCI registry as seen from inside the cluster.
  registryHost(cfg):: '%s:%d' % [cfg.gitea.domain, cfg.gitea.httpPort],

  // secrets(cfg): the Secret objects (local only; {} elsewhere).
  secrets(cfg)::
    if !cfg.secretsRendered then {}
    else
      local v = $.checkValues(cfg.secrets.values);
      local n = cfg.secrets.names;
      local labels = cfg.labels('secrets');
      {
        redis: k8s.secret(n.redis, { 'redis-password': v.redisPassword }, labels),
        gitea: k8s.secret(n.gitea, { username: v.giteaAdminUsername, password: v.giteaAdminPassword }, labels),
        webhooks: k8s.secret(n.webhooks, {
          'gitea-webhook-secret': v.giteaWebhookSecret,
          'github-webhook-secret': v.githubWebhookSecret,
        }, labels),
        registry: k8s.secret(n.registry, {
          '.dockerconfigjson': std.manifestJsonMinified({
            auths: {
              [$.registryHost(cfg)]: {
                username: v.giteaAdminUsername,
                password: v.giteaAdminPassword,
                auth: std.base64(v.giteaAdminUsername + ':' + v.giteaAdminPassword),
              },
            },
          }),
        }, labels, type='kubernetes.io/dockerconfigjson'),
      },

  new(cfg):: {
    config: $.configMap(cfg),
    secrets: $.secrets(cfg),
  },
}
