// Tests of raibid/secrets.libsonnet: local renders the generated values, elsewhere nothing.
local secrets = import 'raibid/secrets.libsonnet';
local t = import 'test.libsonnet';
local util = import 'util.libsonnet';

local loc = secrets.new(t.localCfg);
local stg = secrets.new(t.stagingCfg);

{
  'local renders the four Secrets': t.eq(std.objectFields(loc.secrets), ['gitea', 'redis', 'registry', 'webhooks']),
  'values come from the given (generated) values': t.eq(loc.secrets.gitea.stringData, { username: 'u', password: 'p' }),
  'redis password and the server URL': t.eq(loc.secrets.redis.stringData, {
    'redis-password': 'r',
    'redis-url': 'redis://:r@redis-master.raibid-system.svc.cluster.local:6379',
  }),
  // what the server parses: every reserved byte of the password percent-encoded
  'redis URL percent-encodes / @ : %': t.eq(
    secrets.redisUrl(t.localCfg, 'a/b@c:d%e'),
    'redis://:a%2Fb%40c%3Ad%25e@redis-master.raibid-system.svc.cluster.local:6379',
  ),
  'URL-safe alphabet': t.eq(
    [util.isUrlSafe(s) for s in ['Ab9-._~', 'a/b', 'a@b', 'a:b', 'a%b', 'a+b', 'a=b', '']],
    [true, false, false, false, false, false, false, false],
  ),
  'percent-encoding is UTF-8': t.eq(util.percentEncode('é '), '%C3%A9%20'),
  'webhook secret keys': t.eq(std.objectFields(loc.secrets.webhooks.stringData), ['gitea-webhook-secret', 'github-webhook-secret']),
  'registry Secret is a docker config': t.eq(loc.secrets.registry.type, 'kubernetes.io/dockerconfigjson'),
  'staging renders no Secret': t.eq(stg.secrets, {}),
  'common ConfigMap': t.eq(loc.config.data.QUEUE_STREAM + ' ' + loc.config.data.CONSUMER_GROUP, 'raibid:jobs raibid-agents'),
  // host:port: the agent clones http://{GITEA_HOST}/{repo}.git (raibid-ci executor.rs:88)
  'ConfigMap has the Gitea host:port, no scheme': t.eq(loc.config.data.GITEA_HOST, 'gitea-http.raibid-system.svc.cluster.local:3000'),
  'ConfigMap holds no secret': t.ok(std.length([k for k in std.objectFields(loc.config.data) if std.length(std.findSubstr('PASSWORD', k)) > 0]) == 0),
  'required keys are the generated ones': t.eq(secrets.localKeys, ['redisPassword', 'giteaAdminUsername', 'giteaAdminPassword', 'giteaWebhookSecret', 'githubWebhookSecret']),
}
