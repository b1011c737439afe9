// raibid/main.libsonnet: the whole raibid-ci stack of one environment.
//
// Usage (an environment's main.jsonnet):
//   local raibid = import 'raibid/main.libsonnet';
//   function(images={})
//     raibid.stack(raibid.config.new('staging', { images+: images }))
//
// The result is a tree of objects, one subtree per component; Tanka finds every
// Kubernetes object in it. Components: namespace, config (ConfigMap and, locally,
// Secrets), redis, gitea, keda, flux, server, agent.
local k8s = import 'k8s.libsonnet';

{
  config:: import 'config.libsonnet',
  secrets:: import 'secrets.libsonnet',
  redis:: import 'redis.libsonnet',
  gitea:: import 'gitea.libsonnet',
  keda:: import 'keda.libsonnet',
  flux:: import 'flux.libsonnet',
  server:: import 'server.libsonnet',
  agent:: import 'agent.libsonnet',

  // images(overrides): only the known image keys, so a typo fails loudly.
  images(overrides)::
    local unknown = [k for k in std.objectFields(overrides) if !std.member(['server', 'agent'], k)];
    assert unknown == [] : 'images: unknown key(s) %s; expected server and/or agent' % std.join(', ', unknown);
    overrides,

  stack(cfg):: {
    namespace: k8s.namespace(cfg.namespace, { 'app.kubernetes.io/part-of': cfg.project }),
    config: $.secrets.new(cfg),
    redis: $.redis.new(cfg),
    gitea: $.gitea.new(cfg),
    keda: $.keda.new(cfg),
    flux: if cfg.flux.enabled then $.flux.new(cfg) else {},
    server: $.server.new(cfg),
    agent: $.agent.new(cfg),
  },
}
