// A few DOM helpers: elements from plain calls, never from HTML strings (no injection).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A message region: role=alert for errors (read at once), role=status for the rest.
export function notice() {
  const el = h("p", { class: "notice", role: "status", "aria-live": "polite", hidden: true });
  el.show = (text, kind = "info") => {
    el.hidden = !text;
    el.className = `notice ${kind}`;
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.textContent = text || "";
  };
  return el;
}

// Runs `work` while `button` shows it is busy (disabled, aria-busy, "…"); errors go to `out`.
export async function busy(button, out, work, doneText) {
  const label = button ? button.textContent : "";
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = `${label} …`;
  }
  if (out) out.show("");
  try {
    const result = await work();
    if (out && doneText) out.show(doneText, "ok");
    return result;
  } catch (e) {
    if (out) out.show(e.message || String(e), "error");
    else throw e;
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.textContent = label;
    }
  }
}

export function localpart(userId) {
  return String(userId || "").replace(/^@/, "").split(":")[0];
}
