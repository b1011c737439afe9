// Local development on the k3d cluster (context k3d-raibid-ci).
//
// Images: raibid-server:dev / raibid-agent:dev (Tilt replaces them with what it
// builds; `doit apply:local` passes what `doit push:*` pushed). Secrets: rendered from
// secrets.local.json, which `doit secrets:local` generates once per machine (random,
// gitignored). Small volumes, one replica, Redis without auth.
local environment = import 'raibid/environment.libsonnet';
local raibid = import 'raibid/main.libsonnet';

function(images={})
  environment.new('local', {
    images: raibid.images(images),
    secrets: { values: import 'secrets.local.json' },
    redis: { auth: false, persistence: { size: '1Gi' } },
    gitea: { persistence: { size: '2Gi' } },
    server: { replicas: 1 },
  })
