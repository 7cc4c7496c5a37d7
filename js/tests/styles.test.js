import { describe, expect, it } from 'vitest';
import { BASE_CSS, scopeCss } from '../src/shared/styles.js';

describe('scopeCss', () => {
  it('moves every selector under the root class', () => {
    const css = scopeCss('cnnw-a', '.cnnw-row { gap: 1px; }\n.x, .y label { color: red; }');
    expect(css).toBe('.cnnw-a .cnnw-row { gap: 1px; }\n.cnnw-a .x, .cnnw-a .y label { color: red; }');
  });
  it('reads & as the root and keeps selectors already under it', () => {
    const css = scopeCss('cnnw-a', '& { x: 1; }\n& [hidden] { y: 2; }\n.cnnw-a canvas { z: 3; }\n.cnnw-a.cnnw-b { w: 4; }');
    expect(css).toBe('.cnnw-a { x: 1; }\n.cnnw-a [hidden] { y: 2; }\n.cnnw-a canvas { z: 3; }\n.cnnw-a.cnnw-b { w: 4; }');
  });
  it('leaves no selector of the base stylesheet global', () => {
    const selectors = scopeCss('cnnw-a', BASE_CSS).split('}').map((rule) => rule.split('{')[0]).filter((s) => s.trim());
    for (const group of selectors) for (const selector of group.split(',')) expect(selector.trim().startsWith('.cnnw-a')).toBe(true);
  });
});
