// k8s.libsonnet: constructors for the few Kubernetes objects this project writes by
// hand. Our own, deliberately small (no k8s-libsonnet dependency): each function
// returns a plain object that can be extended with `+`.
//
// Usage:
//   local k8s = import 'k8s.libsonnet';
//   k8s.configMap('raibid-config', { LOG_FORMAT: 'json' }, labels={ app: 'x' })
//   k8s.service('raibid-server', { app: 'x' }, [k8s.servicePort('http', 8080)])
//   k8s.deployment('raibid-server', { app: 'x' }, podSpec, replicas=2)
//   k8s.withLabels({ a: obj, b: [obj2] }, { team: 'ci' })   // labels every object of a tree
local util = import 'util.libsonnet';

{
  // withLabels(objs, labels): every Kubernetes object of a nested tree (util.mapObjects)
  // with `labels` added to its metadata.labels (absent or null labels count as none).
  withLabels(objs, labels)::
    util.mapObjects(objs, function(o)
      local has = std.objectHas(o, 'metadata') && std.objectHas(o.metadata, 'labels') && o.metadata.labels != null;
      o { metadata+: { labels: (if has then o.metadata.labels else {}) + labels } }),

  // metadata(name, labels, annotations): object metadata; empty maps are left out.
  metadata(name, labels={}, annotations={}, namespace=null)::
    { name: name }
    + (if labels != {} then { labels: labels } else {})
    + (if annotations != {} then { annotations: annotations } else {})
    + (if namespace != null then { namespace: namespace } else {}),

  namespace(name, labels={}):: {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: $.metadata(name, labels),
  },

  configMap(name, data, labels={}):: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: $.metadata(name, labels),
    data: { [k]: std.toString(data[k]) for k in std.objectFields(data) },
  },

  // secret(name, stringData): a Secret from values known at render time. Only ever
  // called with values that do not come from the repository (see raibid/secrets).
  secret(name, stringData, labels={}, type='Opaque'):: {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: $.metadata(name, labels),
    type: type,
    stringData: stringData,
  },

  servicePort(name, port, targetPort=null, protocol='TCP'):: {
    name: name,
    port: port,
    targetPort: if targetPort == null then name else targetPort,
    protocol: protocol,
  },

  service(name, selector, ports, labels={}, type='ClusterIP'):: {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: $.metadata(name, labels),
    spec: { type: type, selector: selector, ports: ports },
  },

  containerPort(name, port):: { name: name, containerPort: port, protocol: 'TCP' },

  // httpProbe(path, port): an HTTP GET probe with sensible timings.
  httpProbe(path, port, initialDelaySeconds=5, periodSeconds=10, failureThreshold=3):: {
    httpGet: { path: path, port: port },
    initialDelaySeconds: initialDelaySeconds,
    periodSeconds: periodSeconds,
    timeoutSeconds: 2,
    failureThreshold: failureThreshold,
  },

  // resources(requests, limits): both are { cpu, memory }.
  resources(requests, limits):: { requests: requests, limits: limits },

  // restrictedSecurityContext(uid): a container security context that passes the
  // Kubernetes "restricted" Pod Security Standard.
  restrictedSecurityContext(uid=1000, readOnlyRootFilesystem=true):: {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: readOnlyRootFilesystem,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  },

  // podSecurityContext(uid): the matching pod-level security context.
  podSecurityContext(uid=1000):: {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    fsGroup: uid,
    seccompProfile: { type: 'RuntimeDefault' },
  },

  // preferredAntiAffinity(labels): spread pods with these labels across nodes when
  // possible (never blocks scheduling on a single-node cluster).
  preferredAntiAffinity(labels, weight=100):: {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [{
        weight: weight,
        podAffinityTerm: {
          topologyKey: 'kubernetes.io/hostname',
          labelSelector: { matchLabels: labels },
        },
      }],
    },
  },

  deployment(name, selector, podSpec, replicas=1, labels={}, podLabels={}, podAnnotations={}):: {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: $.metadata(name, labels),
    spec: {
      [if replicas != null then 'replicas']: replicas,
      revisionHistoryLimit: 5,
      selector: { matchLabels: selector },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: selector + podLabels }
                  + (if podAnnotations != {} then { annotations: podAnnotations } else {}),
        spec: podSpec,
      },
    },
  },

  // pdb(name, selector, maxUnavailable): a PodDisruptionBudget: voluntary disruptions
  // (node drains, upgrades) take at most maxUnavailable of the selected pods at a time.
  pdb(name, selector, maxUnavailable=1, labels={}):: {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: $.metadata(name, labels),
    spec: { maxUnavailable: maxUnavailable, selector: { matchLabels: selector } },
  },

  // hpa(name, target, min, max, cpu): an autoscaling/v2 HorizontalPodAutoscaler on
  // average CPU utilisation (percent of requests) of a Deployment.
  hpa(name, target, minReplicas, maxReplicas, cpuUtilization, labels={}):: {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: $.metadata(name, labels),
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: target },
      minReplicas: minReplicas,
      maxReplicas: maxReplicas,
      metrics: [{
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: cpuUtilization } },
      }],
    },
  },
}
