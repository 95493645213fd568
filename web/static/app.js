// Roadgate admin UI: progressive enhancement only. Every page works without this file.
"use strict";

(function () {
  // Confirmation dialogs: a form with data-confirm asks first and, if confirmed, says so in a
  // hidden field (without it the server shows a confirmation page of its own).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (!form.querySelector("input[name=confirm]")) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = "confirm";
      input.value = "yes";
      form.appendChild(input);
    }
  });

  // Auto-refresh of the session table every few seconds while the page is visible.
  var body = document.querySelector("[data-refresh]");
  if (body) {
    var url = body.getAttribute("data-refresh");
    var every = parseInt(body.getAttribute("data-refresh-seconds") || "5", 10) * 1000;
    var stamp = document.getElementById("refreshed");
    var refresh = function () {
      if (document.hidden) return;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html", "X-Background-Refresh": "1" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error("status " + r.status);
          return r.text();
        })
        .then(function (html) {
          body.innerHTML = html;
          if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
        })
        .catch(function () {
          if (stamp) stamp.textContent = "not updated (logged out?)";
        });
    };
    window.setInterval(refresh, every);
  }

  // On a phone the navigation is one row that scrolls sideways: bring the current page's entry
  // into view (the page itself does not move).
  var active = document.querySelector(".nav a.active");
  var nav = active && active.parentElement;
  if (nav && nav.scrollWidth > nav.clientWidth) {
    var a = active.getBoundingClientRect(), n = nav.getBoundingClientRect();
    nav.scrollLeft += a.left - n.left - (n.width - a.width) / 2;
  }

  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target || !navigator.clipboard) return;
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    });
  });
})();
