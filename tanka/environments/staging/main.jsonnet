// Staging: the production shape at a smaller size.
//
// Images from the registry with explicit version tags (override with
// `--tla-code images=...`), Redis auth on, Secrets referenced by name (created in the
// cluster beforehand, see tanka/README.md "Secrets"), two server replicas.
local environment = import 'raibid/environment.libsonnet';
local raibid = import 'raibid/main.libsonnet';

// Gitea's host: its registry serves the images, so DOMAIN/ROOT_URL name it too.
local domain = 'git.raibid.internal';
local registry = domain + '/raibid';
local version = '0.1.0';

function(images={})
  environment.new('staging', {
    version: version,
    images: {
      server: '%s/raibid-server:%s' % [registry, version],
      agent: '%s/raibid-agent:%s' % [registry, version],
    } + raibid.images(images),
    imagePullSecrets: ['raibid-registry'],
    redis: { auth: true, persistence: { size: '8Gi' } },
    gitea: { domain: domain, rootUrl: 'https://%s/' % domain, persistence: { size: '20Gi' } },
    server: { replicas: 2 },
  })
