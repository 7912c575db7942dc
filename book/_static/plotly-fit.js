// Plotly draws each figure while the page is still being parsed, before the
// right-hand contents column exists, so a figure takes the width the text
// column had then and overflows it afterwards. Once the page has loaded,
// redraw every figure at its container's width.
window.addEventListener("load", function () {
  if (!window.Plotly) return;
  document.querySelectorAll(".plotly-graph-div").forEach(function (div) {
    window.Plotly.Plots.resize(div);
  });
});
