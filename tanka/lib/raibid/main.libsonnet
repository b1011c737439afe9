// raibid/main.libsonnet: the whole raibid-ci stack of one environment.
//
// Usage (an environment's main.jsonnet):
//   local raibid = import 'raibid/main.libsonnet';
//   function(images={})
//     raibid.stack(raibid.config.new('staging', { images+: images }))
//
// The result is a tree of objects, one subtree per component; Tanka finds every
// Kubernetes object in it. Components: namespace, config (ConfigMap and, locally,
// Secrets), redis, gitea, keda, flux, server, agent. Every object carries the label
// `raibid.dev/component: <its component>` (componentLabel), Helm-rendered ones included:
// tools group objects by it (the Tiltfile's resources), never by their names.
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

  // images(overrides): only the images config.libsonnet declares (its defaults.images,
  // one per docker/<name>.Dockerfile), so a typo fails loudly.
  images(overrides)::
    local known = std.objectFields($.config.defaults.images);
    local unknown = [k for k in std.objectFields(overrides) if !std.member(known, k)];
    assert unknown == [] :
           'images: unknown key(s) %s; the images are %s (config.libsonnet defaults.images: add an image there, with its docker/<name>.Dockerfile)'
           % [std.join(', ', unknown), std.join(', ', known)];
    overrides,

  // componentLabel: the label naming the component (the key of `stack`) of every object.
  // Our own: the charts set app.kubernetes.io/component themselves, with their own
  // meanings (redis: master, keda: operator) and in their selectors.
  componentLabel:: 'raibid.dev/component',

  // components(cfg): the stack's components, each a tree of objects.
  components(cfg):: {
    namespace: k8s.namespace(cfg.namespace, { 'app.kubernetes.io/part-of': cfg.project }),
    config: $.secrets.new(cfg),
    redis: $.redis.new(cfg),
    gitea: $.gitea.new(cfg),
    keda: $.keda.new(cfg),
    flux: if cfg.flux.enabled then $.flux.new(cfg) else {},
    server: $.server.new(cfg),
    agent: $.agent.new(cfg),
  },

  // stack(cfg): the components, every object labelled with its component.
  stack(cfg)::
    local parts = $.components(cfg);
    { [c]: k8s.withLabels(parts[c], { [$.componentLabel]: c }) for c in std.objectFields(parts) },
}
