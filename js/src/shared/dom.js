// Small DOM helpers for widget views: building elements, filling <select>s, and mapping a pointer
// event to canvas pixel coordinates (the canvas may be shown scaled by CSS).

/** document.createElement(tag) with properties assigned and children appended. */
export function h(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

/** Replace a <select>'s options with [value, label] pairs and select `selected`. */
export function setOptions(select, pairs, selected) {
  select.replaceChildren(...pairs.map(([value, label]) => h('option', { value: String(value), textContent: label })));
  select.value = String(selected);
}

/** Pointer position of `event` in the canvas's own pixel coordinates. */
export function canvasPoint(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * canvas.width) / rect.width,
    y: ((event.clientY - rect.top) * canvas.height) / rect.height,
  };
}
