// raibid/flux.libsonnet: Flux from the fluxcd-community flux2 chart, plus the
// GitRepository and Kustomization that deploy raibid-ci from Gitea (#98).
//
// Controllers: source, kustomize, helm and notification (image automation off), with
// CRDs, resource requests/limits, and without the chart's Helm hooks (its pre-install
// check Job only makes sense under `helm install`) and its namespace-wide
// NetworkPolicies (they would also fence in the rest of raibid-system).
// The GitRepository polls branch `main` of the raibid-ci repository in Gitea every
// minute, authenticating with the Gitea admin Secret; the Kustomization applies its
// `deploy/` directory.
//
// Usage:
//   local flux = import 'raibid/flux.libsonnet';
//   flux.values(cfg)          // the Helm values (pure)
//   flux.gitRepository(cfg)   // the source (pure)
//   flux.new(cfg)             // chart objects + { sync: { gitRepository, kustomization } }
local k8s = import 'k8s.libsonnet';
local helm = (import 'helm.libsonnet').new(std.thisFile);

{
  chart:: '../../charts/flux2',

  values(cfg):: {
    installCRDs: true,
    watchAllNamespaces: true,
    policies: { create: false },
    sourceController: { create: true, resources: cfg.flux.resources },
    kustomizeController: { create: true, resources: cfg.flux.resources },
    helmController: { create: true, resources: cfg.flux.resources },
    notificationController: { create: true, resources: cfg.flux.resources },
    imageAutomationController: { create: false },
    imageReflectionController: { create: false },
    sourceWatcher: { create: false },
  },

  repoUrl(cfg):: '%s/%s/%s.git' % [cfg.giteaUrl, cfg.gitea.repo.owner, cfg.gitea.repo.name],

  gitRepository(cfg):: {
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'GitRepository',
    metadata: k8s.metadata(cfg.gitea.repo.name, cfg.labels('gitops')),
    spec: {
      interval: cfg.flux.interval,
      url: $.repoUrl(cfg),
      ref: { branch: cfg.gitea.repo.branch },
      secretRef: { name: cfg.secrets.names.gitea },
      timeout: '60s',
    },
  },

  kustomization(cfg):: {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: k8s.metadata(cfg.gitea.repo.name, cfg.labels('gitops')),
    spec: {
      interval: '10m',
      retryInterval: '1m',
      timeout: '5m',
      sourceRef: { kind: 'GitRepository', name: cfg.gitea.repo.name },
      path: cfg.flux.path,
      prune: true,
      wait: true,
      targetNamespace: cfg.namespace,
    },
  },

  new(cfg):: helm.template(cfg.flux.release, $.chart, {
    namespace: cfg.namespace,
    kubeVersion: cfg.kubeVersion,
    values: $.values(cfg),
    includeCrds: true,
    noHooks: true,
    skipTests: true,
  }) + {
    sync: {
      gitRepository: $.gitRepository(cfg),
      kustomization: $.kustomization(cfg),
    },
  },
}
