// Production.
//
// Images from the registry with explicit version tags, Redis auth on, Secrets
// referenced by name (tanka/README.md "Secrets"), larger volumes and resources, and
// the server scaled by a HorizontalPodAutoscaler (3 to 10 replicas).
local environment = import 'raibid/environment.libsonnet';
local raibid = import 'raibid/main.libsonnet';

// Gitea's host: its registry serves the images, so DOMAIN/ROOT_URL name it too.
local domain = 'git.raibid.internal';
local registry = domain + '/raibid';
local version = '0.1.0';

function(images={})
  environment.new('prod', {
    version: version,
    logLevel: 'warn',
    images: {
      server: '%s/raibid-server:%s' % [registry, version],
      agent: '%s/raibid-agent:%s' % [registry, version],
    } + raibid.images(images),
    imagePullSecrets: ['raibid-registry'],
    redis: {
      auth: true,
      persistence: { size: '20Gi' },
      resources: {
        requests: { cpu: '500m', memory: '1Gi' },
        limits: { cpu: '2', memory: '4Gi' },
      },
    },
    gitea: {
      domain: domain,
      rootUrl: 'https://%s/' % domain,
      persistence: { size: '50Gi' },
      resources: {
        requests: { cpu: '500m', memory: '1Gi' },
        limits: { cpu: '2', memory: '4Gi' },
      },
    },
    server: {
      replicas: 3,
      hpa: { enabled: true, minReplicas: 3, maxReplicas: 10, cpuUtilization: 70 },
    },
  })
