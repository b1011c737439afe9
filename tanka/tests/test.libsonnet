// test.libsonnet: the tiny test vocabulary of the library tests.
//
// A suite (tanka/tests/<name>_test.jsonnet) evaluates to an object of named cases;
// `doit libtest:<name>` evaluates it with `tk eval` and reports every failing case
// with its expected and actual value.
//
// Usage:
//   local t = import 'test.libsonnet';
//   {
//     'adds numbers': t.eq(1 + 1, 2),
//     'has a name': t.ok(std.objectHas(obj, 'name'), 'obj lacks a name'),
//   }
{
  // eq(actual, expected): passes when both are equal (deep comparison).
  eq(actual, expected):: { ok: actual == expected, actual: actual, expected: expected },

  // ok(condition, message): passes when condition is true.
  ok(condition, message='condition is false'):: { ok: condition == true, message: message },

  // has(obj, path): passes when the dotted field path exists in obj.
  has(obj, path)::
    local parts = std.split(path, '.');
    local walk(o, ps) =
      if ps == [] then true
      else if std.isObject(o) && std.objectHas(o, ps[0]) then walk(o[ps[0]], ps[1:])
      else false;
    { ok: walk(obj, parts), message: 'missing field ' + path },

  // fixtures: one configuration per environment shape, without any secret file.
  config:: import 'raibid/config.libsonnet',
  localCfg:: self.config.new('local', {
    secrets: { values: { redisPassword: 'r', giteaAdminUsername: 'u', giteaAdminPassword: 'p', giteaWebhookSecret: 'g', githubWebhookSecret: 'h' } },
  }),
  stagingCfg:: self.config.new('staging', {
    version: '1.2.3',
    images: { server: 'reg.example/raibid-server:1.2.3', agent: 'reg.example/raibid-agent:1.2.3' },
    imagePullSecrets: ['raibid-registry'],
    redis: { auth: true },
  }),
  prodCfg:: self.stagingCfg { server+: { hpa+: { enabled: true } } },

  // env(container): a container's env list as an object NAME -> entry.
  env(container):: { [e.name]: e for e in container.env },
}
