// Runs in <head> before the page paints, so a chosen theme never flashes the other one.
// Only the theme choice is stored locally; the session lives in an HttpOnly cookie.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("omium-theme"); } catch (e) { /* storage blocked */ }
  if (saved === "dark" || saved === "light") {
    document.documentElement.setAttribute("data-theme", saved);
  }
})();
