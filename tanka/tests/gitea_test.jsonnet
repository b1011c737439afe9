// Tests of raibid/gitea.libsonnet (the Helm values; no chart needed).
local gitea = import 'raibid/gitea.libsonnet';
local t = import 'test.libsonnet';

local v = gitea.values(t.stagingCfg);

{
  'admin credentials from the existing Secret': t.eq(v.gitea.admin.existingSecret, 'raibid-gitea-admin'),
  'no admin password literal': t.ok(!std.objectHas(v.gitea.admin, 'password') && !std.objectHas(v.gitea.admin, 'username')),
  'packages (OCI registry) enabled': t.eq(v.gitea.config.packages.ENABLED, true),
  'sqlite database': t.eq(v.gitea.config.database.DB_TYPE, 'sqlite3'),
  'bundled databases and caches off': t.eq(
    [v['valkey-cluster'].enabled, v.valkey.enabled, v.postgresql.enabled, v['postgresql-ha'].enabled],
    [false, false, false, false],
  ),
  'persistent storage': t.eq(v.persistence.enabled, true),
  'HTTP service on 3000': t.eq([v.service.http.port, v.gitea.config.server.HTTP_PORT], [3000, 3000]),
  'one replica, recreated': t.eq([v.replicaCount, v.strategy.type], [1, 'Recreate']),
  'non-root without privilege escalation': t.eq(
    [v.containerSecurityContext.runAsNonRoot, v.containerSecurityContext.allowPrivilegeEscalation],
    [true, false],
  ),
  'init containers have limits': t.has(v, 'initContainers.resources.limits.cpu'),
  'root URL is the in-cluster service by default': t.eq(v.gitea.config.server.ROOT_URL, 'http://gitea-http.raibid-system.svc.cluster.local:3000/'),
  'DOMAIN and ROOT_URL follow the environment': t.eq(
    local s = gitea.values(t.config.new('staging', { gitea: { domain: 'git.example', rootUrl: 'https://git.example/' } })).gitea.config.server;
    [s.DOMAIN, s.ROOT_URL],
    ['git.example', 'https://git.example/'],
  ),
  'ssh Service is not headless (its 22 -> 2222 mapping works)': t.eq(
    [v.service.ssh.clusterIP, v.service.ssh.port, v.gitea.config.server.SSH_LISTEN_PORT],
    ['', 22, 2222],
  ),
}
