// The dashboard's only script of its own (the CSP allows no inline script): the theme
// toggle, the admin's tenant switch, the CSRF header on htmx requests, and charts.
(function () {
  "use strict";
  var root = document.documentElement;

  function currentTheme() {
    var set = root.getAttribute("data-theme");
    if (set) return set;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches
      ? "dark" : "light";
  }

  function wireTheme() {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    var label = function () {
      button.setAttribute("aria-pressed", currentTheme() === "dark" ? "true" : "false");
    };
    label();
    button.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("omium-theme", next); } catch (e) { /* private mode */ }
      label();
      document.dispatchEvent(new CustomEvent("omium:theme"));
    });
  }

  function wireAutosubmit() {
    // A select marked data-autosubmit (the tenant switch, the LLM window) submits its form
    // on change; its form keeps a submit button for keyboards and browsers without script.
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function csrfHeader() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    document.body.addEventListener("htmx:configRequest", function (e) {
      if (meta) e.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
    });
  }

  function keepOpenDetails() {
    // A live refresh replaces the execution's body: the sections a reader opened or closed
    // stay as they were (matched by data-key), and so does the page's scroll position.
    var state = null;
    document.body.addEventListener("htmx:beforeSwap", function (e) {
      state = {};
      e.detail.target.querySelectorAll("details[data-key]").forEach(function (d) {
        state[d.getAttribute("data-key")] = d.open;
      });
    });
    document.body.addEventListener("htmx:afterSwap", function () {
      if (!state) return;
      document.querySelectorAll("details[data-key]").forEach(function (d) {
        var key = d.getAttribute("data-key");
        if (key in state) d.open = state[key];
      });
      state = null;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    keepOpenDetails();
    wireTheme();
    wireAutosubmit();
    csrfHeader();
    if (window.OmiumCharts) window.OmiumCharts.drawAll();
  });
})();
