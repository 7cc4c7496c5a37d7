// One-way actions (run the sanity check, grow a fooling image, start, stop, reset): a custom message
// {action: name}; the widget runs the method of that name if it lists it in ACTIONS (cnnwidgets/widgets/base.py).
// Nothing answers an action directly: its results arrive as trait changes, like any other state.

/** Ask Python to run action `name` of the widget behind `model`. */
export function sendAction(model, name) {
  model.send({ action: name });
}
