// util.libsonnet: small helpers for configuration merging, environment variables and
// references to Secrets and ConfigMaps. No dependencies; every function is pure.
//
// Usage:
//   local util = import 'util.libsonnet';
//   util.deepMerge({ a: { b: 1, c: 2 } }, { a: { c: 3 } })   // { a: { b: 1, c: 3 } }
//   util.envList({
//     REDIS_PASSWORD: util.secretRef('raibid-redis', 'redis-password'),
//     LOG_FORMAT: 'json',
//   })
//   // [ { name: 'REDIS_PASSWORD', valueFrom: { secretKeyRef: {...} } },
//   //   { name: 'LOG_FORMAT', value: 'json' } ]
{
  // deepMerge(a, b): b merged into a, recursively for nested objects; b wins for
  // every other value (arrays and scalars are replaced, not concatenated). A null in b
  // removes nothing: it sets the field to null.
  deepMerge(a, b)::
    if std.isObject(a) && std.isObject(b) then
      a + {
        [k]: if std.objectHas(a, k) then $.deepMerge(a[k], b[k]) else b[k]
        for k in std.objectFields(b)
      }
    else b,

  // deepMergeAll([a, b, c]): folds deepMerge over a list, left to right.
  deepMergeAll(list):: std.foldl($.deepMerge, list, {}),

  // secretRef(name, key): an env var source reading `key` of Secret `name`.
  secretRef(name, key, optional=false):: {
    valueFrom: { secretKeyRef: { name: name, key: key } + (if optional then { optional: true } else {}) },
  },

  // configMapRef(name, key): an env var source reading `key` of ConfigMap `name`.
  configMapRef(name, key):: {
    valueFrom: { configMapKeyRef: { name: name, key: key } },
  },

  // fieldRef(path): an env var source reading a pod field, e.g. 'metadata.name'.
  fieldRef(path):: {
    valueFrom: { fieldRef: { fieldPath: path } },
  },

  // envList(obj): a container `env` list from an object of NAME: value.
  //   - a string, number or boolean becomes { name, value: std.toString(value) };
  //   - an object made by secretRef/configMapRef/fieldRef becomes { name, valueFrom };
  //   - null drops the variable (handy for optional settings).
  // References come first (sorted by name), then plain values (sorted by name), so a
  // plain value can use Kubernetes' $(VAR) expansion of any referenced variable.
  envList(obj)::
    local names = std.objectFields(obj);
    local isRef(n) = std.isObject(obj[n]);
    [{ name: n } + obj[n] for n in names if obj[n] != null && isRef(n)]
    + [{ name: n, value: std.toString(obj[n]) } for n in names if obj[n] != null && !isRef(n)],

  // URL_SAFE: RFC 3986's unreserved characters, the only ones a URL carries verbatim.
  URL_SAFE:: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~',

  // isUrlSafe(s): true when s is non-empty and made only of URL_SAFE characters, so it
  // can sit in a URL unencoded (the raibid-ci agent builds redis://:{password}@host
  // without encoding).
  isUrlSafe(s):: std.isString(s) && s != '' && std.all([std.member($.URL_SAFE, c) for c in std.stringChars(s)]),

  // percentEncode(s): s with every UTF-8 byte outside URL_SAFE written as %XX, e.g.
  //   util.percentEncode('a/b@c')   // 'a%2Fb%40c'
  percentEncode(s)::
    local hex = '0123456789ABCDEF';
    std.join('', [
      if b < 128 && std.member($.URL_SAFE, std.char(b)) then std.char(b)
      else '%' + hex[std.floor(b / 16)] + hex[b % 16]
      for b in std.encodeUTF8(s)
    ]),

  // objectValues(obj): the values of an object's visible fields, in field order.
  objectValues(obj):: [obj[k] for k in std.objectFields(obj)],

  // mapObjects(objs, f): applies f to every Kubernetes object in a nested tree of
  // objects (anything with `apiVersion` and `kind`), keeping the tree's shape. Used
  // to patch every object a Helm chart renders (labels, namespaces).
  mapObjects(objs, f)::
    if std.isObject(objs) && std.objectHas(objs, 'apiVersion') && std.objectHas(objs, 'kind') then f(objs)
    else if std.isObject(objs) then { [k]: $.mapObjects(objs[k], f) for k in std.objectFields(objs) }
    else if std.isArray(objs) then [$.mapObjects(o, f) for o in objs]
    else objs,

  // listObjects(objs): every Kubernetes object of a nested tree, as a flat list.
  listObjects(objs)::
    if std.isObject(objs) && std.objectHas(objs, 'apiVersion') && std.objectHas(objs, 'kind') then [objs]
    else if std.isObject(objs) then std.flattenArrays([$.listObjects(objs[k]) for k in std.objectFields(objs)])
    else if std.isArray(objs) then std.flattenArrays([$.listObjects(o) for o in objs])
    else [],
}
