// The agent console's keyboard shortcuts and small conveniences (no inline script: strict CSP).
(function () {
  "use strict";

  function typing(target) {
    const tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function rows() {
    return Array.from(document.querySelectorAll("[data-keyboard-list] tr[data-row]"));
  }

  function selected() {
    return document.querySelector("tr[data-row].selected");
  }

  function select(row) {
    rows().forEach(function (r) { r.classList.remove("selected"); r.removeAttribute("aria-selected"); });
    if (row) {
      row.classList.add("selected");
      row.setAttribute("aria-selected", "true");
      row.scrollIntoView({ block: "nearest" });
      const link = row.querySelector("[data-open]");
      if (link) { link.focus({ preventScroll: true }); }
    }
  }

  function move(step) {
    const all = rows();
    if (!all.length) { return; }
    const index = all.indexOf(selected());
    const next = index < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(Math.max(index + step, 0), all.length - 1);
    select(all[next]);
  }

  function press(key) {
    // A button for this key: in the selected row first, else the page's own (refund page).
    const row = selected();
    const scoped = row && row.querySelector('[data-key="' + key + '"]');
    const button = scoped || (!rows().length && document.querySelector('[data-key="' + key + '"]'));
    if (button) { button.click(); return true; }
    return false;
  }

  function help() {
    const dialog = document.getElementById("shortcuts");
    if (!dialog) { return; }
    if (dialog.open) { dialog.close(); } else { dialog.showModal(); }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    let handled = true;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "o":
      case "Enter": {
        const row = selected();
        if (row && row.dataset.href) { window.location.assign(row.dataset.href); } else { handled = false; }
        break;
      }
      case "x": {
        const row = selected();
        const box = row && row.querySelector("[data-pick]");
        if (box) { box.checked = !box.checked; } else { handled = false; }
        break;
      }
      case "c": handled = press("c"); break;
      case "a": handled = press("a"); break;
      case "r": {
        const reason = document.querySelector('[data-key-focus="r"]');
        if (reason) { reason.focus(); } else if (selected() && selected().dataset.href) {
          window.location.assign(selected().dataset.href + "#reject-form");
        } else { handled = false; }
        break;
      }
      case "/": {
        const search = document.querySelector('[data-shortcut-focus="/"]');
        if (search) { search.focus(); search.select(); } else { handled = false; }
        break;
      }
      case "?": help(); break;
      default: handled = false;
    }
    if (handled) { event.preventDefault(); }
  });

  document.addEventListener("click", function (event) {
    const target = event.target;
    if (target.closest && target.closest("[data-help]")) { help(); return; }
    const row = target.closest && target.closest("tr[data-row]");
    if (row && !target.closest("a, button, input, label, select")) { select(row); }
  });

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target.matches && target.matches("select[data-autosubmit]")) { target.form.submit(); }
  });

  document.documentElement.classList.add("js");
  if (window.location.hash === "#reject-form") {
    const reason = document.querySelector('[data-key-focus="r"]');
    if (reason) { reason.focus(); }
  }
})();
