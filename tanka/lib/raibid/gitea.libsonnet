// raibid/gitea.libsonnet: Gitea with its OCI registry (packages), from the Gitea chart (#96).
//
// One replica (rootless image), SQLite on a persistent volume (fine for one replica;
// see README.md to switch to PostgreSQL), packages (the OCI registry) enabled, an
// in-cluster HTTP Service `gitea-http` on port 3000, and the admin account from the
// existing Secret `cfg.secrets.names.gitea` (keys `username`, `password`), never from
// a literal. The chart's bundled Valkey and PostgreSQL are off.
//
// Usage:
//   local gitea = import 'raibid/gitea.libsonnet';
//   gitea.values(cfg)   // the Helm values (pure)
//   gitea.new(cfg)      // the rendered chart objects
local k8s = import 'k8s.libsonnet';
local helm = (import 'helm.libsonnet').new(std.thisFile);

{
  chart:: '../../charts/gitea',

  values(cfg)::
    assert std.split(cfg.giteaHost, ':')[0] == cfg.gitea.domain :
           'gitea.domain %s is not the host of gitea.rootUrl %s: set both to where Gitea is reached' % [cfg.gitea.domain, cfg.giteaRootUrl];
    {
      replicaCount: 1,
      // one pod owns the ReadWriteOnce volume: replace, never overlap
      strategy: { type: 'Recreate' },
      image: { rootless: true },
      podSecurityContext: { fsGroup: 1000 },
      containerSecurityContext: k8s.restrictedSecurityContext(1000, readOnlyRootFilesystem=false),
      resources: cfg.gitea.resources,
      initContainers: {
        resources: {
          requests: { cpu: '50m', memory: '64Mi' },
          limits: { cpu: '500m', memory: '256Mi' },
        },
      },
      service: {
        http: { type: 'ClusterIP', port: cfg.gitea.httpPort },
        // The chart makes the ssh Service headless (clusterIP: None) by default, where
        // its 22 -> 2222 mapping does nothing: a plain ClusterIP Service maps it.
        ssh: { type: 'ClusterIP', port: 22, clusterIP: '' },
      },
      persistence: {
        enabled: cfg.gitea.persistence.enabled,
        size: cfg.gitea.persistence.size,
      },
      gitea: {
        admin: {
          existingSecret: cfg.secrets.names.gitea,
          email: cfg.gitea.adminEmail,
          passwordMode: 'keepUpdated',
        },
        config: {
          server: {
            // the registry sends clients to ROOT_URL for a token: it must be the host
            // the images are pulled from (config.libsonnet gitea.rootUrl)
            DOMAIN: cfg.gitea.domain,
            ROOT_URL: cfg.giteaRootUrl,
            // the chart takes the Service's targetPort and the container port from here
            HTTP_PORT: cfg.gitea.httpPort,
            SSH_PORT: 22,
            SSH_LISTEN_PORT: 2222,
          },
          database: { DB_TYPE: 'sqlite3' },
          packages: { ENABLED: true },
          service: { DISABLE_REGISTRATION: true },
          cache: { ADAPTER: 'memory' },
          session: { PROVIDER: 'memory' },
          queue: { TYPE: 'level' },
          log: { LEVEL: 'Info' },
        },
        livenessProbe: { enabled: true },
        readinessProbe: { enabled: true },
      },
      'valkey-cluster': { enabled: false },
      valkey: { enabled: false },
      postgresql: { enabled: false },
      'postgresql-ha': { enabled: false },
    },

  new(cfg):: helm.template(cfg.gitea.release, $.chart, {
    namespace: cfg.namespace,
    kubeVersion: cfg.kubeVersion,
    values: $.values(cfg),
    skipTests: true,
  }),
}
