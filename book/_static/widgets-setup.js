// Runs on pages with saved ipywidgets, after require.js and before the
// html-manager embed script (order set by nb_ipywidgets_js in _config.yml).
(function () {
  // The embed script finds its fonts next to the URL that require.js gives its
  // AMD module id; without a path that URL is relative to the page (404).
  // Keep the version in step with the embed script's URL in _config.yml.
  require.config({
    paths: {
      "@jupyter-widgets/html-manager":
        "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.15",
    },
  });

  // Widgets typeset their labels with MathJax 2's MathJax.Hub.Queue; the book
  // loads MathJax 3, which has typesetPromise and no Hub.  MathJax 3 replaces
  // window.MathJax when it loads, so patch again at "load": the async MathJax
  // script has run by then, and this listener runs before the embed script's.
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function (job) {
        var el = Array.isArray(job) ? job[2] : null;
        if (el && window.MathJax.typesetPromise) {
          window.MathJax.typesetPromise([el]).catch(function () {});
        }
      },
    };
  }
  addHub();
  window.addEventListener("load", addHub);
})();
