// raibid/environment.libsonnet: the Tanka environment an environment's main.jsonnet returns.
//
// Usage (tanka/environments/<name>/main.jsonnet):
//   local environment = import 'raibid/environment.libsonnet';
//   function(images={})
//     environment.new('qa', { server+: { replicas: 2 } })
//
// An inline environment (no spec.json): its namespace comes from deploy.json, the one
// home of the deploy settings, so nothing here repeats them. `name` must have an entry in
// deploy.json `environments` (its kind, kube context and apply rules); a missing one
// fails loudly. doit applies with the context deploy.json gives, never `tk apply`.
local config = import 'config.libsonnet';
local main = import 'main.libsonnet';

{
  // new(name, overrides): the stack of config.new(name, overrides) as a Tanka environment.
  new(name, overrides={})::
    assert std.objectHas(config.settings.environments, name) :
           'environment %s has no entry in deploy.json "environments": add {"%s": {"kind": ...}}' % [name, name];
    local cfg = config.new(name, overrides);
    {
      apiVersion: 'tanka.dev/v1alpha1',
      kind: 'Environment',
      metadata: { name: 'environments/' + name },
      spec: { namespace: cfg.namespace, injectLabels: true },
      data: main.stack(cfg),
    },
}
