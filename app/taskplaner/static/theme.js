"use strict";
// Runs before the first paint: the saved theme ("light" or "dark"; none = follow the system).
(function () {
  try {
    const theme = localStorage.getItem("tp-theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage disabled: follow the system */ }
})();
