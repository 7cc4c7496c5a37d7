// The request protocol of cnnwidgets/widgets/base.py, for one view: a control that needs Python work stamps a
// request id on the model with its state change (one message); Python echoes the id in its answer; the view
// draws only answers to its newest request (`RequestStamp.accept`). One class, so every widget drops stale answers
// the same way.
import { RequestStamp } from './requests.js';

export class ViewRequests {
  #model;
  #stamp = new RequestStamp();
  #base;
  #issued = 0;
  #answered = 0;
  #acceptedOwn = false;

  /** Ids continue from the model's `request` (another view of the widget may have sent some): ids up to the
   * model's value when this view opened predate it. */
  constructor(model) {
    this.#model = model;
    this.#base = model.get('request') ?? 0;
  }

  /** Stamp a new request on the model; send it with the traits it asks for (it supersedes every earlier one). */
  stamp() {
    this.#issued = this.#stamp.next();
    this.#model.set('request', this.#base + this.#issued);
    return this.#issued;
  }

  /** `commit(name, value)` (from throttledTraits) for a control that needs Python work: a new request is stamped
   * first, so the id travels in the same message as the trait. */
  committing(commit) {
    return (name, value) => {
      this.stamp();
      commit(name, value);
    };
  }

  /** True when an answer carrying `request` may be drawn: the answer to this view's newest request so far, or,
   * before this view sent any, an answer Python made on its own (changes from Python echo the current id). */
  accept(request) {
    const own = (request ?? 0) - this.#base;
    if (own <= 0) return !this.#acceptedOwn;
    if (!this.#stamp.accept(own)) return false;
    this.#acceptedOwn = true;
    this.#answered = Math.max(this.#answered, own);
    return true;
  }

  /** Call on every change of the model's `request`: when Python rolls a refused message back, the id it sends back
   * is older than this view's newest and no answer will come, so nothing is pending any more. */
  settle() {
    const own = (this.#model.get('request') ?? 0) - this.#base;
    if (own < this.#issued) this.#answered = this.#issued;
  }

  /** True while this view waits for the answer to a request it sent. */
  pending() {
    return this.#answered < this.#issued;
  }
}
