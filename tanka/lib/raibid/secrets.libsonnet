// raibid/secrets.libsonnet: the common ConfigMap and the Secrets of the stack (#113).
//
// - `raibid-config` (ConfigMap): Redis connection, Gitea URL, stream and consumer
//   group names, Gitea's address, log settings. Server and agent read it.
// - Secrets `cfg.secrets.names.*`: Redis password (and the server's Redis URL built
//   from it, key `redis-url`), Gitea admin credentials, webhook
//   secrets, registry credentials. They are rendered ONLY when `cfg.secrets.values` is
//   set, which only the local environment does, from the file `doit secrets:local`
//   generates (random, per machine, gitignored). Staging and prod leave it null: the
//   Secrets are created in the cluster (README.md, "Secrets") and only referenced.
//
// Usage:
//   local secrets = import 'raibid/secrets.libsonnet';
//   secrets.new(cfg)   // { config: ConfigMap, secrets: { redis: Secret, ... } or {} }
local k8s = import 'k8s.libsonnet';
local util = import 'util.libsonnet';

{
  // The keys `doit secrets:local` writes into environments/local/secrets.local.json
  // (one list, shared with tasks/tanka.py).
  localKeys:: import 'secret-keys.json',

  // checkValues(values): the values, or an error naming what is missing or unsafe and
  // the fix. Every value must be URL-safe (util.URL_SAFE): the raibid-ci agent puts
  // the Redis password into redis://:{password}@host:port without encoding, and a
  // `/`, `@` or `:` there breaks its URL.
  checkValues(values)::
    local missing = [k for k in $.localKeys if !std.objectHas(values, k) || !std.isString(values[k]) || values[k] == ''];
    assert missing == [] :
           'environments/local/secrets.local.json lacks %s: run `doit secrets:local` (it keeps existing values and adds missing ones)' % std.join(', ', missing);
    local unsafe = [k for k in $.localKeys if !util.isUrlSafe(values[k])];
    assert unsafe == [] :
           'environments/local/secrets.local.json: %s must use only A-Z a-z 0-9 - . _ ~ (URL-safe: the agent embeds the Redis password in a URL unencoded); delete the key and run `doit secrets:local` to generate a new one' % std.join(', ', unsafe);
    values,

  // redisUrl(cfg, password): the server's RAIBID_REDIS_URL, the password percent-encoded
  // (the server parses it as a URL; the agent builds its own from REDIS_PASSWORD).
  redisUrl(cfg, password):: 'redis://:%s@%s' % [util.percentEncode(password), cfg.redisAddress],

  // configMap(cfg): the common, non-secret configuration.
  configMap(cfg):: k8s.configMap('raibid-config', {
    REDIS_HOST: '%s.%s.svc.cluster.local' % [cfg.redis.host, cfg.namespace],
    REDIS_PORT: cfg.redis.port,
    REDIS_AUTH: cfg.redis.auth,
    QUEUE_STREAM: cfg.redis.stream,
    CONSUMER_GROUP: cfg.redis.consumerGroup,
    // host:port, no scheme: the agent prepends http:// (tests/fixtures/contract/agent.json)
    GITEA_HOST: cfg.giteaAddress,
    LOG_FORMAT: 'json',
    LOG_LEVEL: cfg.logLevel,
  }, cfg.labels('config')),

  // registryHost(cfg): Gitea's OCI registry, the host of its ROOT_URL.
  registryHost(cfg):: cfg.giteaHost,

  // secrets(cfg): the Secret objects (local only; {} elsewhere).
  secrets(cfg)::
    if !cfg.secretsRendered then {}
    else
      local v = $.checkValues(cfg.secrets.values);
      local n = cfg.secrets.names;
      local labels = cfg.labels('secrets');
      {
        redis: k8s.secret(n.redis, { 'redis-password': v.redisPassword, 'redis-url': $.redisUrl(cfg, v.redisPassword) }, labels),
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
