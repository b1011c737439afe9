// raibid/flux.libsonnet: Flux from the fluxcd-community flux2 chart, plus the
// GitRepository and Kustomization that deploy raibid-ci from Gitea (#98).
//
// Controllers: source, kustomize, helm and notification (image automation off), with
// CRDs, resource requests/limits, and without the chart's Helm hooks (its pre-install
// check Job only makes sense under `helm install`) and its namespace-wide
// NetworkPolicies (they would also fence in the rest of raibid-system).
// The GitRepository polls branch `main` of the GitOps repository in Gitea
// (cfg.gitops: raibid/raibid-gitops) every minute, authenticating with the Gitea admin
// Secret; the Kustomization applies `environments/<env>/`, which `doit publish:<env>`
// writes there from the validated render (tasks/gitops.py). The GitRepository's
// annotations tell publish where: `raibid.dev/publish-path` (the directory) and
// `raibid.dev/push-url` (the repository as seen from outside the cluster).
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

  repoUrl(cfg):: '%s/%s/%s.git' % [cfg.giteaUrl, cfg.gitops.owner, cfg.gitops.repo],

  gitRepository(cfg):: {
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'GitRepository',
    metadata: k8s.metadata(cfg.gitops.repo, cfg.labels('gitops'), {
      'raibid.dev/publish-path': cfg.gitopsPath,
      'raibid.dev/push-url': cfg.gitopsPushUrl,
    }),
    spec: {
      interval: cfg.flux.interval,
      url: $.repoUrl(cfg),
      ref: { branch: cfg.gitops.branch },
      secretRef: { name: cfg.secrets.names.gitea },
      timeout: '60s',
    },
  },

  kustomization(cfg):: {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: k8s.metadata(cfg.gitops.repo, cfg.labels('gitops')),
    spec: {
      interval: '10m',
      retryInterval: '1m',
      timeout: '5m',
      sourceRef: { kind: 'GitRepository', name: cfg.gitops.repo },
      path: './' + cfg.gitopsPath,
      prune: true,
      wait: true,
      // no targetNamespace: every object keeps the namespace it was rendered with (KEDA's
      // RoleBinding in kube-system), as apply:<env> applies it
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
