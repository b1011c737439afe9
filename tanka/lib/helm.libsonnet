// helm.libsonnet: renders a vendored Helm chart with Tanka's native `helmTemplate`
// (the same function grafana/jsonnet-libs' tanka-util wraps), without that dependency.
//
// Charts are found relative to the file that calls `template`, which is why `new`
// takes `std.thisFile`: Tanka cannot know the caller otherwise.
//
// Usage (in tanka/lib/raibid/redis.libsonnet, charts vendored in tanka/charts/):
//   local helm = (import 'helm.libsonnet').new(std.thisFile);
//   helm.template('redis', '../../charts/redis', {
//     namespace: 'raibid-system',
//     values: { architecture: 'standalone' },
//   })
//   // => { stateful_set_redis_master: {...}, service_redis_master: {...}, ... }
//
// Options (all optional): values, namespace, includeCrds (default true), skipTests,
// noHooks, kubeVersion, apiVersions, nameFormat. They map to `helm template` flags.
local k8s = import 'k8s.libsonnet';

{
  // new(calledFrom): a renderer bound to the calling file (pass std.thisFile).
  new(calledFrom):: {
    assert std.isString(calledFrom) && calledFrom != '' : 'helm.new(std.thisFile): calledFrom must be the calling file',

    // template(name, chart, conf): the chart's objects, keyed like `service_redis_master`.
    template(name, chart, conf={})::
      std.native('helmTemplate')(name, chart, conf { calledFrom: calledFrom }),
  },

  // withLabels(objs, labels): adds labels to every object a chart rendered (k8s.withLabels).
  withLabels(objs, labels):: k8s.withLabels(objs, labels),

  // without(objs, pred): drops the objects for which pred(object) is true.
  without(objs, pred)::
    { [k]: objs[k] for k in std.objectFields(objs) if !pred(objs[k]) },
}
