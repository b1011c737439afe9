// raibid/config.libsonnet: the one configuration object of an environment, with the
// project's naming and labelling conventions (app.kubernetes.io/*).
//
// Every library under raibid/ takes this object (`cfg`) and nothing else, so an
// environment is "defaults + the overrides that make it different".
//
// Usage:
//   local config = import 'raibid/config.libsonnet';
//   local cfg = config.new('staging', { server+: { replicas: 3 } });
//   cfg.namespace              // 'raibid-system'
//   cfg.name('server')         // 'raibid-server'
//   cfg.labels('server')       // { 'app.kubernetes.io/name': 'raibid-server', ... }
//   cfg.selector('server')     // the stable subset of labels used in selectors
//
// `overrides` is deep-merged (util.deepMerge), so `{ server: { replicas: 3 } }` keeps
// every other server setting.
local util = import 'util.libsonnet';
// The deploy settings (project, namespace, Kubernetes version, environments): one file
// at the project root, read by doit and the Tiltfile too. Never repeat them here.
local settings = import '../../../deploy.json';

{
  // Defaults: what local development uses unless an environment says otherwise.
  defaults:: {
    env: 'local',
    project: settings.project,
    namespace: settings.namespace,
    version: 'dev',  // app.kubernetes.io/version of our own objects
    logLevel: 'info',
    // Kubernetes version Helm renders the charts for (Capabilities.KubeVersion): the
    // one validation uses too.
    kubeVersion: settings.kubernetes_version,

    // Image references of our applications: one per docker/<name>.Dockerfile (a test
    // checks they match), named raibid-<name>. In the local environment Tilt and
    // `doit apply` replace them by the images they built (by that name, whatever the
    // tag); by hand: `tk show --tla-code images=...`. staging/prod pin explicit versions.
    images: {
      server: 'raibid-server:dev',
      agent: 'raibid-agent:dev',
    },
    imagePullPolicy: 'IfNotPresent',
    // Secrets holding registry credentials, referenced by our pods (staging/prod).
    imagePullSecrets: [],

    // Names of the Secrets the stack reads. Local: rendered from the generated,
    // gitignored environments/local/secrets.local.json. Elsewhere: created in the
    // cluster by an operator (README.md, "Secrets"); the render only references them.
    secrets: {
      values: null,  // null: reference existing Secrets, render none
      names: {
        redis: 'raibid-redis',  // key: redis-password
        gitea: 'raibid-gitea-admin',  // keys: username, password
        webhooks: 'raibid-webhooks',  // keys: gitea-webhook-secret, github-webhook-secret
        registry: 'raibid-registry',  // type kubernetes.io/dockerconfigjson
      },
    },

    redis: {
      release: 'redis',
      // The Bitnami chart names the master Service `<release>-master`.
      host: 'redis-master',
      port: 6379,
      auth: false,
      stream: 'raibid:jobs',
      consumerGroup: 'raibid-agents',
      persistence: { enabled: true, size: '8Gi' },
      resources: {
        requests: { cpu: '100m', memory: '128Mi' },
        limits: { cpu: '500m', memory: '512Mi' },
      },
      image: {
        registry: 'docker.io',
        repository: 'bitnamilegacy/redis',
        tag: '8.2.1-debian-12-r0',
      },
    },

    gitea: {
      release: 'gitea',
      httpService: 'gitea-http',
      httpPort: 3000,
      adminEmail: 'gitea-admin@raibid.local',
      // DOMAIN and ROOT_URL: where clients (nodes pulling images, browsers, git)
      // reach Gitea. Gitea's registry sends clients to ROOT_URL for a token, so outside
      // local they must be the host the images are pulled from (the environments set
      // both; `rootUrl: null` means the in-cluster URL, right only where nothing
      // outside the cluster talks to Gitea).
      domain: 'gitea-http.raibid-system.svc.cluster.local',
      rootUrl: null,
      persistence: { enabled: true, size: '10Gi' },
      resources: {
        requests: { cpu: '100m', memory: '256Mi' },
        limits: { cpu: '1', memory: '1Gi' },
      },
    },

    // The GitOps repository (in Gitea) that `doit publish:<env>` writes each validated
    // render to, under `environments/<env>/`, and that Flux applies from.
    gitops: {
      owner: 'raibid',
      repo: 'raibid-gitops',
      branch: 'main',
      dir: 'environments',
    },

    keda: {
      release: 'keda',
      resources: {
        requests: { cpu: '100m', memory: '128Mi' },
        limits: { cpu: '500m', memory: '512Mi' },
      },
    },

    flux: {
      release: 'flux',
      enabled: true,
      interval: '1m',
      resources: {
        requests: { cpu: '50m', memory: '64Mi' },
        limits: { cpu: '500m', memory: '512Mi' },
      },
    },

    server: {
      replicas: 1,
      port: 8080,
      logFormat: 'json',
      corsEnabled: false,
      maxBodySize: 10485760,
      rateLimitRpm: 600,
      resources: {
        requests: { cpu: '500m', memory: '512Mi' },
        limits: { cpu: '1', memory: '1Gi' },
      },
      hpa: { enabled: false, minReplicas: 2, maxReplicas: 6, cpuUtilization: 70 },
      uid: 1000,
    },

    agent: {
      pollingInterval: 10,
      minReplicaCount: 0,
      maxReplicaCount: 10,
      lagCount: '5',
      maxConcurrentJobs: 1,
      pollIntervalMs: 1000,
      terminationGracePeriodSeconds: 300,
      activeDeadlineSeconds: 7200,
      workspaceDir: '/workspace',
      workspaceSizeLimit: '20Gi',
      resources: {
        requests: { cpu: '1', memory: '2Gi' },
        limits: { cpu: '2', memory: '4Gi' },
      },
      uid: 1000,
    },
  },

  // settings: deploy.json, as doit reads it.
  settings:: settings,

  // new(env, overrides): the configuration of environment `env` (its namespace from
  // deploy.json's `environments.<env>.namespace`, else the project's).
  new(env, overrides={})::
    local own = std.get(settings.environments, env, {});
    local c = util.deepMerge($.defaults { env: env, namespace: std.get(own, 'namespace', settings.namespace) }, overrides);
    c {
      local this = self,

      // name(component): the object name of one of our components.
      name(component):: 'raibid-' + component,

      // selector(component): labels that identify a component's pods (stable).
      selector(component):: {
        'app.kubernetes.io/name': this.name(component),
        'app.kubernetes.io/instance': c.project,
      },

      // labels(component): the full recommended label set.
      labels(component):: this.selector(component) {
        'app.kubernetes.io/component': component,
        'app.kubernetes.io/part-of': c.project,
        'app.kubernetes.io/managed-by': 'tanka',
        'app.kubernetes.io/version': c.version,
        'raibid.dev/environment': c.env,
      },

      // redisAddress: host:port of the Redis master inside the cluster.
      redisAddress:: '%s.%s.svc.cluster.local:%d' % [c.redis.host, c.namespace, c.redis.port],

      // giteaAddress: host:port of Gitea's HTTP Service inside the cluster (what the agent's
      // GITEA_HOST holds: it builds http://{GITEA_HOST}/{repo}.git itself); giteaUrl: as a URL.
      giteaAddress:: '%s.%s.svc.cluster.local:%d' % [c.gitea.httpService, c.namespace, c.gitea.httpPort],
      giteaUrl:: 'http://' + this.giteaAddress,

      // giteaRootUrl: Gitea's ROOT_URL (always ends with '/'); giteaHost: its host[:port],
      // which is also the registry host of images kept in Gitea.
      giteaRootUrl:: if this.gitea.rootUrl == null then this.giteaUrl + '/'
      else if std.endsWith(this.gitea.rootUrl, '/') then this.gitea.rootUrl
      else this.gitea.rootUrl + '/',
      giteaHost:: std.split(this.giteaRootUrl, '/')[2],

      // gitopsPath: where the published render of this environment lives in the GitOps
      // repository (no leading './'); gitopsPushUrl: the repository as seen from outside.
      gitopsPath:: '%s/%s' % [this.gitops.dir, this.env],
      gitopsPushUrl:: '%s%s/%s.git' % [this.giteaRootUrl, this.gitops.owner, this.gitops.repo],

      // serverMinReplicas: the fewest server replicas that run (the HPA's minimum when
      // it scales); above 1 the server gets a PodDisruptionBudget.
      serverMinReplicas:: if this.server.hpa.enabled then this.server.hpa.minReplicas else this.server.replicas,

      // secretsRendered: true when the render creates the Secrets itself (local).
      secretsRendered:: c.secrets.values != null,
    },
}
