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

// Passkeys (WebAuthn): the buttons show only where the browser has them. Options come from the
// API as JSON with base64url strings; the browser wants bytes, and its answer goes back as
// base64url again.
(function passkeys() {
  if (!window.PublicKeyCredential || !navigator.credentials) return;
  document.querySelectorAll(".passkey-only").forEach((el) => { el.hidden = false; });
  const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const bytes = (text) => Uint8Array.from(
    atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4)),
    (c) => c.charCodeAt(0));
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const json = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(json.error?.message || `HTTP ${response.status}`);
      error.code = json.error?.code;
      throw error;
    }
    return json;
  }
  function creationOptions(options) {
    const pk = options.publicKey;
    pk.challenge = bytes(pk.challenge);
    pk.user.id = bytes(pk.user.id);
    (pk.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    return { publicKey: pk };
  }
  function requestOptions(options) {
    const pk = options.publicKey;
    pk.challenge = bytes(pk.challenge);
    (pk.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    return { publicKey: pk };
  }
  const registration = (c) => ({
    id: c.id, rawId: b64(c.rawId), type: c.type,
    response: {
      attestationObject: b64(c.response.attestationObject),
      clientDataJSON: b64(c.response.clientDataJSON),
      transports: c.response.getTransports ? c.response.getTransports() : [],
    },
    extensions: c.getClientExtensionResults(),
  });
  const assertion = (c) => ({
    id: c.id, rawId: b64(c.rawId), type: c.type,
    response: {
      authenticatorData: b64(c.response.authenticatorData),
      clientDataJSON: b64(c.response.clientDataJSON),
      signature: b64(c.response.signature),
      userHandle: c.response.userHandle ? b64(c.response.userHandle) : null,
    },
    extensions: c.getClientExtensionResults(),
  });
  async function sign(url, body) {
    const ceremony = await post(url, body);
    const credential = await navigator.credentials.get(requestOptions(ceremony.options));
    return { token: ceremony.token, credential: assertion(credential) };
  }
  const flows = {
    async login(button) {
      const username = document.getElementById("login-username")?.value.trim();
      if (!username) throw new Error(button.dataset.needName);
      const remember = document.getElementById("login-remember")?.checked || false;
      const answer = await sign("/api/v1/auth/passkey/options", { username, remember });
      await post("/api/v1/auth/passkey", answer);
      location.assign(button.dataset.next || "/");
    },
    async "second-factor"(button) {
      const sign_in_token = button.dataset.signInToken;
      const answer = await sign("/api/v1/auth/second-factor/passkey-options", { sign_in_token });
      await post("/api/v1/auth/second-factor/passkey", { ...answer, sign_in_token });
      location.assign(button.dataset.next || "/");
    },
    async confirm(button) {
      await post("/api/v1/auth/confirm/passkey", await sign("/api/v1/auth/confirm/options"));
      const next = button.dataset.next || "/";
      location.assign(next + (next.includes("?") ? "&" : "?") + "notice=confirmed");
    },
    async register() {
      let ceremony;
      try {
        ceremony = await post("/api/v1/me/passkeys/options");
      } catch (error) {
        if (error.code === "step_up_required") {
          location.assign("/confirm?next=" + encodeURIComponent("/settings#two-factor"));
          return;
        }
        throw error;
      }
      const credential = await navigator.credentials.create(creationOptions(ceremony.options));
      const name = document.getElementById("passkey-name")?.value || "";
      await post("/api/v1/me/passkeys", { token: ceremony.token, name, credential: registration(credential) });
      location.assign("/settings?notice=two_factor_on#two-factor");
    },
  };
  document.querySelectorAll("button[data-passkey]").forEach((button) => {
    button.addEventListener("click", async () => {
      const flow = flows[button.dataset.passkey];
      if (!flow) return;
      button.disabled = true;
      button.parentElement.querySelector(".problems")?.remove();
      try {
        await flow(button);
      } catch (error) {
        const problem = document.createElement("p");
        problem.className = "problems";
        problem.setAttribute("role", "alert");
        problem.textContent = `${button.dataset.failed || ""} ${error.message || ""}`.trim();
        button.after(problem);
      } finally {
        button.disabled = false;
      }
    });
  });
})();
