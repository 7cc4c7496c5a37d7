// Keeping user-originated traffic to Python sane: throttle bursts of sends, and stamp requests so
// answers to requests that have since been superseded can be recognised and dropped.

/**
 * fn throttled to at most one call per `ms`: the first call runs at once (leading), later calls
 * within the window collapse into one trailing call with the latest arguments.
 * `throttled.flush()` runs a pending trailing call now (e.g. on cleanup).
 */
export function throttle(fn, ms) {
  let lastRun = -Infinity;
  let timer = null;
  let latestArgs = null;
  const run = () => {
    timer = null;
    lastRun = Date.now();
    const args = latestArgs;
    latestArgs = null;
    fn(...args);
  };
  const throttled = (...args) => {
    latestArgs = args;
    if (timer !== null) return;
    const wait = lastRun + ms - Date.now();
    if (wait <= 0) run();
    else timer = setTimeout(run, wait);
  };
  throttled.flush = () => {
    if (timer === null) return;
    clearTimeout(timer);
    run();
  };
  return throttled;
}

/** Increasing request ids; answers carry the id of the request they answer. */
export class RequestStamp {
  #newestIssued = 0;
  #newestAccepted = 0;

  /** Id for a new request; it supersedes all earlier ones. */
  next() {
    this.#newestIssued += 1;
    return this.#newestIssued;
  }

  /** True when `id` belongs to the newest request issued. */
  isCurrent(id) {
    return id === this.#newestIssued;
  }

  /**
   * True (and remembered) when an answer for request `id` may be shown: it was issued and is not
   * older than the newest answer already accepted. False drops a stale answer.
   */
  accept(id) {
    if (!(id >= this.#newestAccepted && id <= this.#newestIssued && id > 0)) return false;
    this.#newestAccepted = id;
    return true;
  }
}

/**
 * Trait writes from a view: `commit(name, value)` sets the trait at once and saves to Python throttled to one
 * message per `ms`; `saveSoon()` is that throttled save (flush it on cleanup).
 */
export function throttledTraits(model, ms) {
  const saveSoon = throttle(() => model.save_changes(), ms);
  const commit = (name, value) => {
    model.set(name, value);
    saveSoon();
  };
  return { commit, saveSoon };
}
