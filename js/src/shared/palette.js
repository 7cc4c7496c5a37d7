// Categorical colours for classes: matplotlib's tab10 for up to 10 classes, tab20 beyond (repeating).

const TAB10 = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const TAB20 = [
  '#1f77b4', '#aec7e8', '#ff7f0e', '#ffbb78', '#2ca02c', '#98df8a', '#d62728', '#ff9896', '#9467bd', '#c5b0d5',
  '#8c564b', '#c49c94', '#e377c2', '#f7b6d2', '#7f7f7f', '#c7c7c7', '#bcbd22', '#dbdb8d', '#17becf', '#9edae5',
];

/** CSS colour of class `index` when there are `classes` classes (as matplotlib's tab10 / tab20 do). */
export function categoryColor(index, classes) {
  const table = classes <= 10 ? TAB10 : TAB20;
  return table[((index % table.length) + table.length) % table.length];
}
