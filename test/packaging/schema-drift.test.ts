// The chart's values.schema.json and Portcullis's own validator must accept the same config keys,
// or `helm install` would reject a valid config (or let a typo through to a failing pod).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CONFIG_KEYS } from '../../src/config/validate.js';

test('the chart schema knows exactly the config keys Portcullis accepts (no drift)', () => {
  const schema = JSON.parse(readFileSync('helm/portcullis/values.schema.json', 'utf8')) as { properties: { config: { properties: Record<string, { properties?: Record<string, unknown> }> } } };
  const config = schema.properties.config.properties;
  const sections: Array<[string, readonly string[], Record<string, unknown>]> = [
    ['config', CONFIG_KEYS.root, config],
    ['config.oidc', CONFIG_KEYS.oidc, config.oidc!.properties!],
    ['config.session', CONFIG_KEYS.session, config.session!.properties!],
  ];
  for (const [where, keys, props] of sections) {
    assert.deepEqual(Object.keys(props).sort(), [...keys].sort(), `${where}: schema properties vs validate.ts CONFIG_KEYS`);
  }
});
