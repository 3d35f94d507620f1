// Holdfast: progressive enhancement only. Every page works without this script.
"use strict";

// Warn before leaving a form with unsaved changes.
(function guardUnsaved() {
  let dirty = false;
  let submitting = false;
  const message = document.querySelector('meta[name="holdfast-unsaved"]')?.content || "";
  document.querySelectorAll("form[data-guard]").forEach((form) => {
    form.addEventListener("input", () => { dirty = true; });
    form.addEventListener("change", () => { dirty = true; });
    form.addEventListener("submit", () => { submitting = true; });
  });
  window.addEventListener("beforeunload", (event) => {
    if (dirty && !submitting) {
      event.preventDefault();
      event.returnValue = message;
      return message;
    }
  });
})();

// Reference pickers: type part of a name, choose from matches found through the API.
(function refPickers() {
  document.querySelectorAll("input[data-ref]").forEach((input) => {
    const hidden = input.parentElement.querySelector(`input[type="hidden"][name="${input.dataset.refField}"]`);
    if (!hidden) return;
    const list = document.createElement("ul");
    list.className = "suggest";
    list.hidden = true;
    input.parentElement.appendChild(list);
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const q = input.value.trim();
      if (q === "") { hidden.value = ""; list.hidden = true; return; }
      timer = setTimeout(async () => {
        const url = `/api/v1/${input.dataset.ref}?limit=8&q=${encodeURIComponent(q)}`;
        const response = await fetch(url, { credentials: "same-origin" });
        if (!response.ok) { list.hidden = true; return; }
        const body = await response.json();
        list.replaceChildren();
        for (const item of body.items) {
          const li = document.createElement("li");
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = item.name || item.subject || `#${item.id}`;
          button.addEventListener("click", () => {
            hidden.value = item.id;
            input.value = button.textContent;
            list.hidden = true;
            input.form?.dispatchEvent(new Event("input"));
          });
          li.appendChild(button);
          list.appendChild(li);
        }
        list.hidden = body.items.length === 0;
      }, 200);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") list.hidden = true;
      if (event.key === "ArrowDown") list.querySelector("button")?.focus();
    });
  });
})();

// Pipeline board: drag a card onto another stage; the card's own form does the move.
(function board() {
  let dragged = null;
  document.querySelectorAll(".card-deal[draggable]").forEach((card) => {
    card.addEventListener("dragstart", (event) => {
      dragged = card;
      event.dataTransfer.setData("text/plain", card.dataset.deal);
      event.dataTransfer.effectAllowed = "move";
    });
  });
  document.querySelectorAll(".board .column").forEach((column) => {
    column.addEventListener("dragover", (event) => { event.preventDefault(); column.classList.add("drop"); });
    column.addEventListener("dragleave", () => column.classList.remove("drop"));
    column.addEventListener("drop", (event) => {
      event.preventDefault();
      column.classList.remove("drop");
      if (!dragged) return;
      const form = dragged.querySelector("form.move");
      const select = form?.querySelector('select[name="stage"]');
      if (!select || select.value === column.dataset.stage) return;
      select.value = column.dataset.stage;
      form.submit();
    });
  });
})();
