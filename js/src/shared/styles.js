// One stylesheet per widget, scoped under the widget's root class: every rule of a widget's CSS is rewritten to
// apply inside `.cnnw-<widget>` only, so two widgets that both style `.cnnw-row` or `.cnnw-predictions` (with
// different sizes) in one notebook never restyle each other, whichever loads last. Colours come from JupyterLab's
// theme variables (with light fallbacks outside JupyterLab), so a dark theme reads well.
import { h } from './dom.js';

/** Rules every widget starts from (`&` is the widget's root): its layout and font, hidden parts, captions and notes,
 * the error box. Anything more belongs to the widget's own CSS (or PANEL_CSS), so no rule means two things. */
export const BASE_CSS = `
& { display: flex; flex-direction: column; gap: 8px; font: 13px/1.4 var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222); }
& [hidden] { display: none !important; }
.cnnw-caption, .cnnw-note { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
.cnnw-error { flex: 1 1 200px; min-width: 0; padding: 2px 8px; border-radius: 3px; background: var(--jp-error-color1, #c62828); color: var(--jp-ui-inverse-font-color0, #fff); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
`;

/** `css` with every selector moved under `.${root}`: `&` stands for the root itself; a selector that already
 * starts with `.${root}` is kept. Flat rule lists only (no @media blocks), which is all the widgets use. */
export function scopeCss(root, css) {
  const scope = `.${root}`;
  return css.split('}').map((chunk) => {
    const open = chunk.indexOf('{');
    if (open < 0) return chunk;
    const selectors = chunk.slice(0, open).split(',').map((selector) => {
      const trimmed = selector.trim();
      if (trimmed.startsWith('&')) return scope + trimmed.slice(1);
      if (trimmed === scope || trimmed.startsWith(`${scope} `) || trimmed.startsWith(`${scope}.`) || trimmed.startsWith(`${scope}[`)) return trimmed;
      return `${scope} ${trimmed}`;
    });
    return `\n${selectors.join(', ')} ${chunk.slice(open)}`;
  }).join('}').trim();
}

/** The <style> element of widget `root`: BASE_CSS, then the widget's own `css` (later rules win), both scoped. */
export function scopedStyle(root, css = '') {
  return h('style', { textContent: scopeCss(root, `${BASE_CSS}\n${css}`) });
}
