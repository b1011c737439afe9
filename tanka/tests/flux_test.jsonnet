// Tests of raibid/flux.libsonnet (values and the GitOps objects; no chart needed).
local flux = import 'raibid/flux.libsonnet';
local t = import 'test.libsonnet';

local v = flux.values(t.localCfg);
local repo = flux.gitRepository(t.localCfg);
local ks = flux.kustomization(t.localCfg);

{
  'source, kustomize, helm and notification controllers': t.eq(
    [v.sourceController.create, v.kustomizeController.create, v.helmController.create, v.notificationController.create],
    [true, true, true, true],
  ),
  'image automation off': t.eq([v.imageAutomationController.create, v.imageReflectionController.create], [false, false]),
  'CRDs installed': t.eq(v.installCRDs, true),
  'no namespace-wide network policies': t.eq(v.policies.create, false),
  'controllers have limits': t.has(v, 'sourceController.resources.limits.cpu'),
  'GitRepository points at the GitOps repository in Gitea': t.eq(repo.spec.url, 'http://gitea-http.raibid-system.svc.cluster.local:3000/raibid/raibid-gitops.git'),
  'publish writes where the Kustomization reads': t.eq(
    ['./' + repo.metadata.annotations['raibid.dev/publish-path'], ks.spec.path],
    ['./environments/local', './environments/local'],
  ),
  'push URL from outside the cluster (ROOT_URL)': t.eq(
    flux.gitRepository(t.config.new('staging', { gitea: { domain: 'git.example', rootUrl: 'https://git.example' } })).metadata.annotations['raibid.dev/push-url'],
    'https://git.example/raibid/raibid-gitops.git',
  ),
  'branch main': t.eq(repo.spec.ref, { branch: 'main' }),
  'interval 1m': t.eq(repo.spec.interval, '1m'),
  'authenticates with the Gitea Secret': t.eq(repo.spec.secretRef.name, 'raibid-gitea-admin'),
  'Kustomization deploys from the GitRepository': t.eq(ks.spec.sourceRef, { kind: 'GitRepository', name: 'raibid-gitops' }),
  'Kustomization prunes': t.eq(ks.spec.prune, true),
}
