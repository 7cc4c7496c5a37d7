// Bookkeeping of every listener a view adds (model events and DOM events) so that the view's
// cleanup can remove all of them with one call.

export class Listeners {
  #removers = [];

  /** model.on(event, fn), undone by removeAll(). */
  onModel(model, event, fn) {
    model.on(event, fn);
    this.#removers.push(() => model.off(event, fn));
  }

  /** target.addEventListener(type, fn), undone by removeAll(). */
  onDom(target, type, fn) {
    target.addEventListener(type, fn);
    this.#removers.push(() => target.removeEventListener(type, fn));
  }

  removeAll() {
    for (const remove of this.#removers.splice(0)) remove();
  }
}
