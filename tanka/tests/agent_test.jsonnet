// Tests of raibid/agent.libsonnet: the KEDA ScaledJob contract.
local agent = import 'raibid/agent.libsonnet';
local t = import 'test.libsonnet';

local loc = agent.new(t.localCfg);
local stg = agent.new(t.stagingCfg);
local sj = loc.scaledJob.spec;
local pod = sj.jobTargetRef.template.spec;
local env = t.env(pod.containers[0]);

{
  'scales 0 to 10': t.eq([sj.minReplicaCount, sj.maxReplicaCount], [0, 10]),
  'polls every 10 s': t.eq(sj.pollingInterval, 10),
  'redis-streams trigger on raibid:jobs, group raibid-agents, lag 5': t.eq(sj.triggers[0], {
    type: 'redis-streams',
    metadata: {
      address: 'redis-master.raibid-system.svc.cluster.local:6379',
      stream: 'raibid:jobs',
      consumerGroup: 'raibid-agents',
      lagCount: '5',
    },
  }),
  'gradual rollout': t.eq(sj.rollout.strategy, 'gradual'),
  'jobs never restart': t.eq([pod.restartPolicy, sj.jobTargetRef.backoffLimit], ['Never', 0]),
  'graceful shutdown': t.ok(pod.terminationGracePeriodSeconds >= 60),
  'workspace emptyDir': t.eq(pod.volumes[0].name, 'workspace'),
  'requests 1/2Gi, limits 2/4Gi': t.eq(pod.containers[0].resources, { requests: { cpu: '1', memory: '2Gi' }, limits: { cpu: '2', memory: '4Gi' } }),
  'stream and group from the ConfigMap': t.eq(env.QUEUE_STREAM.valueFrom.configMapKeyRef, { name: 'raibid-config', key: 'QUEUE_STREAM' }),
  'agent id is the pod name': t.eq(env.AGENT_ID.valueFrom.fieldRef.fieldPath, 'metadata.name'),
  'workspace dir': t.eq(env.WORKSPACE_DIR.value, '/workspace'),
  'no TriggerAuthentication without Redis auth': t.ok(!std.objectHas(loc, 'triggerAuthentication')),
  'TriggerAuthentication from the Redis Secret with auth': t.eq(stg.triggerAuthentication.spec.secretTargetRef, [{ parameter: 'password', name: 'raibid-redis', key: 'redis-password' }]),
  'trigger uses it': t.eq(stg.scaledJob.spec.triggers[0].authenticationRef, { name: 'raibid-agent-redis' }),
  'agent gets the password with auth': t.eq(t.env(stg.scaledJob.spec.jobTargetRef.template.spec.containers[0]).REDIS_PASSWORD.valueFrom.secretKeyRef.name, 'raibid-redis'),
  'non-root': t.eq(pod.securityContext.runAsNonRoot, true),
}
