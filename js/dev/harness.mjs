// Renders a widget from js/src in a plain page, against a fake anywidget model, so widgets can be
// developed and screenshotted without Jupyter. `?widget=<name>` picks js/src/<name>.js and
// ./fixtures/<name>.mjs (synthetic state + a fake kernel); any other query parameter overrides a
// trait of the initial state (JSON, or a plain string). `window.harness` exposes model and cleanup.

/**
 * Fake anywidget model: get/set/on/off/save_changes/send like the real one. `set` fires
 * change:<name> at once and marks the trait dirty; `save_changes` hands the dirty traits to the
 * fake kernel. `receive` applies traits coming from the kernel (not dirty, not saved back).
 */
export function createFakeModel(state) {
  const handlersByEvent = new Map();
  const kernelHandlers = { save: [], message: [] };
  let dirty = {};
  const emit = (event, ...args) => [...(handlersByEvent.get(event) ?? [])].forEach((fn) => fn(...args));
  const apply = (name, value) => {
    if (state[name] === value) return false;
    state[name] = value;
    emit(`change:${name}`, model, value);
    return true;
  };
  const model = {
    get: (name) => state[name],
    set(name, value) {
      if (apply(name, value)) dirty[name] = value;
    },
    on(event, fn) {
      if (!handlersByEvent.has(event)) handlersByEvent.set(event, new Set());
      handlersByEvent.get(event).add(fn);
    },
    off(event, fn) {
      handlersByEvent.get(event)?.delete(fn);
    },
    save_changes() {
      const changes = dirty;
      dirty = {};
      console.log('save_changes', changes);
      kernelHandlers.save.forEach((fn) => fn(changes));
    },
    send(content, callbacks, buffers) {
      console.log('send', content);
      kernelHandlers.message.forEach((fn) => fn(content, buffers));
    },
    // harness-only helpers
    receive(changes) {
      Object.entries(changes).forEach(([name, value]) => apply(name, value));
    },
    onKernel(kind, fn) {
      kernelHandlers[kind].push(fn);
    },
    listenerCount: () => [...handlersByEvent.values()].reduce((count, set) => count + set.size, 0),
  };
  return model;
}

function parseOverride(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const params = new URLSearchParams(location.search);
const name = params.get('widget') ?? 'layer_explorer';
params.delete('widget');
const widget = (await import(`../src/${name}.js`)).default;
const fixture = await import(`./fixtures/${name}.mjs`);

const state = fixture.initialState();
for (const [trait, text] of params) state[trait] = parseOverride(text);
const model = createFakeModel(state);
fixture.connectFakeKernel?.(model);

const el = document.getElementById('widget');
await widget.initialize?.({ model });
const cleanup = await widget.render({ model, el });
window.harness = { model, el, cleanup };
document.body.dataset.rendered = 'true';
